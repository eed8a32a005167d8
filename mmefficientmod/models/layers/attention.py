"""The plain pre-norm transformer block of EfficientMod's last stages."""
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn.bricks import DropPath

from .deploy_utils import (fold_affine_into_linear, layer_norm_affine,
                           strip_layer_norm_affine)


class MultiHeadSelfAttention(nn.Module):
    """Multi-head self-attention over the positions of a channels-last map.

    Uses PyTorch's fused ``scaled_dot_product_attention``.

    Args:
        channels (int): Width C of the input and output.
        num_heads (int): Number of heads. Defaults to 8.
        min_head_dims (int): Lower bound of the head width; the head width is
            ``max(C // num_heads, min_head_dims)``, so the inner width may
            exceed C (256 for C = 128 or 144). Defaults to 32.
        qkv_bias (bool): Give ``qkv`` a bias (the deploy form's, which holds
            the folded norm shift). Defaults to False.
    """

    def __init__(self,
                 channels: int,
                 num_heads: int = 8,
                 min_head_dims: int = 32,
                 qkv_bias: bool = False):
        super().__init__()
        self.num_heads = num_heads
        self.head_dims = max(channels // num_heads, min_head_dims)
        inner = num_heads * self.head_dims
        self.qkv = nn.Linear(channels, 3 * inner, bias=qkv_bias)
        self.proj = nn.Linear(inner, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, h, w, _ = x.shape
        # qkv's output channels are laid out as (3, heads, head_dims).
        qkv = self.qkv(x).reshape(n, h * w, 3, self.num_heads, self.head_dims)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(n, h, w, -1))


class FeedForward(nn.Module):
    """Linear -> GELU -> linear.

    Args:
        channels (int): Input and output width.
        hidden_channels (int): Hidden width.
    """

    def __init__(self, channels: int, hidden_channels: int):
        super().__init__()
        self.fc1 = nn.Linear(channels, hidden_channels)
        self.fc2 = nn.Linear(hidden_channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class AttentionBlock(nn.Module):
    """Pre-norm transformer block without layer scale.

    Args:
        channels (int): Width C of the block.
        mlp_ratio (int): Hidden width of the feed-forward as a multiple of C.
        drop_path (float): Stochastic depth rate. Defaults to 0.
        deploy (bool): Build the inference form directly (what
            :meth:`switch_to_deploy` makes): norms without affine part and a
            bias for ``attn.qkv``. Defaults to False.
    """

    def __init__(self,
                 channels: int,
                 mlp_ratio: int,
                 drop_path: float = 0.,
                 deploy: bool = False):
        super().__init__()
        self.deploy = deploy
        self.norm1 = nn.LayerNorm(channels, elementwise_affine=not deploy)
        self.attn = MultiHeadSelfAttention(channels, qkv_bias=deploy)
        self.norm2 = nn.LayerNorm(channels, elementwise_affine=not deploy)
        self.ffn = FeedForward(channels, mlp_ratio * channels)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.ffn(self.norm2(x)))

    @torch.no_grad()
    def switch_to_deploy(self) -> None:
        """Fold both LayerNorms' affine parts into ``attn.qkv`` and ``ffn.fc1``.

        ``attn.qkv`` gains a bias (the projection of the norm's shift); the
        norms keep only the normalisation. The forward pass is unchanged.
        """
        if self.deploy:
            return
        for norm_name, owner, linear_name in (('norm1', self.attn, 'qkv'),
                                              ('norm2', self.ffn, 'fc1')):
            norm = getattr(self, norm_name)
            scale, shift = layer_norm_affine(norm)
            linear = getattr(owner, linear_name)
            setattr(owner, linear_name,
                    fold_affine_into_linear(linear, scale, shift))
            setattr(self, norm_name, strip_layer_norm_affine(norm))
        self.deploy = True
