"""The EfficientMod modulation block.

Tensors are channels-last (N, H, W, C) inside a stage, so every linear layer
works on the last dimension without a layout change; the depthwise convolution
takes a permuted *view* of that tensor (channels-last strides), which PyTorch's
convolution consumes without a copy.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn.bricks import DropPath


class ContextBranch(nn.Module):
    """Linear -> 7x7 depthwise conv -> GELU -> linear, on a channels-last map.

    Args:
        channels (int): Width C of the branch (input and output).
        kernel_size (int): Depthwise kernel size. Defaults to 7.
    """

    def __init__(self, channels: int, kernel_size: int = 7):
        super().__init__()
        self.fc_in = nn.Linear(channels, channels)
        self.dwconv = nn.Conv2d(
            channels, channels, kernel_size, padding=kernel_size // 2,
            groups=channels)
        self.fc_out = nn.Linear(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc_out(self.spatial(self.fc_in(x)))

    def spatial(self, x: torch.Tensor) -> torch.Tensor:
        """Depthwise conv + GELU of an (N, H, W, C) map, returned as (N, H, W, C)."""
        x = self.dwconv(x.permute(0, 3, 1, 2))
        return F.gelu(x).permute(0, 2, 3, 1)


class ModulationBlock(nn.Module):
    """EfficientMod block: ``x + gamma * fc_out(value * tile(context, r))``.

    Args:
        channels (int): Width C of the block.
        ratio (int): Expansion ratio r of the value branch. With ``r == 1``
            the value branch has no activation, as in the reference.
        kernel_size (int): Depthwise kernel of the context branch.
            Defaults to 7.
        drop_path (float): Stochastic depth rate. Defaults to 0.
        layer_scale_init_value (float): Initial value of the per-channel
            layer scale. Defaults to 1e-4.
    """

    def __init__(self,
                 channels: int,
                 ratio: int,
                 kernel_size: int = 7,
                 drop_path: float = 0.,
                 layer_scale_init_value: float = 1e-4):
        super().__init__()
        self.ratio = ratio
        self.norm = nn.LayerNorm(channels)
        self.fc_value = nn.Linear(channels, ratio * channels)
        self.context = ContextBranch(channels, kernel_size)
        self.fc_out = nn.Linear(ratio * channels, channels)
        self.layer_scale = nn.Parameter(
            torch.full((channels, ), float(layer_scale_init_value)))
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def modulate(self, value: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """``value * tile(context, r)`` by broadcasting, without building the tile.

        Channel j of the value is multiplied by channel ``j mod C`` of the
        context, i.e. the value viewed as (..., r, C) times context (..., 1, C).
        """
        if self.ratio == 1:
            return value * context
        shape = value.shape
        value = value.view(*shape[:-1], self.ratio, -1)
        return (value * context.unsqueeze(-2)).view(shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm(x)
        value = self.fc_value(y)
        if self.ratio != 1:
            value = F.gelu(value)
        out = self.fc_out(self.modulate(value, self.context(y)))
        return x + self.drop_path(out * self.layer_scale)
