"""The EfficientMod modulation block.

Tensors are channels-last (N, H, W, C) inside a stage, as in the authors'
model, so every linear layer works on the last dimension. The depthwise
convolution takes a permuted *view* of that tensor: a contiguous (N, H, W, C)
tensor is an (N, C, H, W) one in channels-last memory format, which PyTorch's
convolution reads without a copy and answers in the same format, so the
permute back is a view as well.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn.bricks import DropPath

from .deploy_utils import (fold_affine_into_linear, layer_norm_affine,
                           scale_linear_output, strip_layer_norm_affine)


class ContextBranch(nn.Module):
    """Linear -> depthwise conv -> GELU -> linear, on a channels-last map.

    Args:
        channels (int): Width C of the branch (input and output).
        kernel_size (int): Depthwise kernel size. Defaults to 7.
    """

    def __init__(self, channels: int, kernel_size: int = 7):
        super().__init__()
        self.fc_in = nn.Linear(channels, channels)
        self.dwconv = nn.Conv2d(
            channels,
            channels,
            kernel_size,
            padding=kernel_size // 2,
            groups=channels)
        self.fc_out = nn.Linear(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.fc_in(x)
        x = self.dwconv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return self.fc_out(F.gelu(x))


class ModulationBlock(nn.Module):
    """EfficientMod block: ``x + gamma * fc_out(value * tile(context, r))``.

    ``value = GELU(fc_value(norm(x)))`` is r times wider than the block
    (no GELU when r = 1, as in the authors' model) and ``context`` is the
    :class:`ContextBranch` of ``norm(x)``. Channel j of the value is
    multiplied by channel ``j mod C`` of the context: the value is viewed as
    (..., r, C) and the context broadcast over r, so the tiled context is
    never built.

    Args:
        channels (int): Width C of the block.
        ratio (int): Expansion ratio r of the value branch.
        kernel_size (int): Depthwise kernel of the context branch.
            Defaults to 7.
        drop_path (float): Stochastic depth rate. Defaults to 0.
        layer_scale_init_value (float): Initial value of the per-channel
            layer scale ``gamma``. Defaults to 1e-4.
        deploy (bool): Build the inference form directly (what
            :meth:`switch_to_deploy` makes): a norm without affine part and
            no layer scale. Defaults to False.
    """

    def __init__(self,
                 channels: int,
                 ratio: int,
                 kernel_size: int = 7,
                 drop_path: float = 0.,
                 layer_scale_init_value: float = 1e-4,
                 deploy: bool = False):
        super().__init__()
        self.channels = channels
        self.ratio = ratio
        self.deploy = deploy
        self.norm = nn.LayerNorm(channels, elementwise_affine=not deploy)
        self.fc_value = nn.Linear(channels, ratio * channels)
        self.value_act = nn.GELU() if ratio > 1 else nn.Identity()
        self.context = ContextBranch(channels, kernel_size)
        self.fc_out = nn.Linear(ratio * channels, channels)
        if not deploy:
            self.layer_scale = nn.Parameter(
                torch.full((channels, ), float(layer_scale_init_value)))
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm(x)
        value = self.value_act(self.fc_value(y))
        context = self.context(y)
        # Channel j of the value is modulated by channel j mod C of the
        # context: broadcast over the ratio instead of tiling the context.
        # (reshape rather than unflatten: ONNX opset 11, which MMDeploy's
        # deploy configs use, has no unflatten.)
        modulated = value.reshape(*value.shape[:-1], self.ratio,
                                  self.channels) * context.unsqueeze(-2)
        out = self.fc_out(modulated.flatten(-2))
        if not self.deploy:  # deploy: folded into fc_out
            out = out * self.layer_scale
        return x + self.drop_path(out)

    @torch.no_grad()
    def switch_to_deploy(self) -> None:
        """Fold the block into its inference form, in place.

        * The LayerNorm's affine part moves into the two linear layers that
          read its output, ``fc_value`` and ``context.fc_in``
          (``W (g * y + b) + c = (W diag g) y + (W b + c)``); ``norm`` keeps
          only the normalisation.
        * The layer scale moves into ``fc_out`` (``diag(gamma) W``,
          ``gamma * b``).

        The block then computes the same function up to float rounding.
        """
        if self.deploy:
            return
        scale, shift = layer_norm_affine(self.norm)
        self.fc_value = fold_affine_into_linear(self.fc_value, scale, shift)
        self.context.fc_in = fold_affine_into_linear(self.context.fc_in, scale,
                                                     shift)
        self.norm = strip_layer_norm_affine(self.norm)
        scale_linear_output(self.fc_out, self.layer_scale)
        del self.layer_scale
        self.deploy = True
