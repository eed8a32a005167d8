"""The plain pre-norm transformer block of EfficientMod's last stages."""
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from .deploy_utils import (fold_affine_into_linear, layer_norm_affine,
                           strip_layer_norm_affine)
from .fused_ops import linear, linear_then, map_row_chunks
from .residual import DropPath, scaled_residual


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

    def forward(self,
                x: torch.Tensor,
                residual: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The attention output, plus ``residual`` when given (fused into
        the output projection where possible)."""
        n, h, w, _ = x.shape
        # qkv output is laid out as (3, heads, head_dims) along channels.
        qkv = linear(x, self.qkv).view(n, h * w, 3, self.num_heads,
                                       self.head_dims)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        out = F.scaled_dot_product_attention(q, k, v)
        out = out.transpose(1, 2).reshape(n, h, w, -1)
        if residual is None:
            return linear(out, self.proj)
        return linear_then(out, self.proj, residual, 'add')


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

    def forward(self,
                x: torch.Tensor,
                residual: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The feed-forward output, plus ``residual`` when given (fused
        into ``fc2`` where possible)."""
        if residual is None:
            return linear(linear(x, self.fc1, activation=True), self.fc2)
        return map_row_chunks(self.with_residual, self.fc1.out_features, x,
                              residual)

    def with_residual(self, x: torch.Tensor,
                      residual: torch.Tensor) -> torch.Tensor:
        """``residual + forward(x)``, the sum fused into ``fc2``."""
        hidden = linear(x, self.fc1, activation=True)
        return linear_then(hidden, self.fc2, residual, 'add')


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
        keep = self.drop_path.keep_scale(x)
        if keep is None and not torch.is_grad_enabled():
            # Without autograd, the residual sums are fused into the
            # branches' last layers, or go into their fresh outputs.
            x = self.attn(self.norm1(x), residual=x)
            return self.ffn(self.norm2(x), residual=x)
        x = scaled_residual(x, self.attn(self.norm1(x)), keep=keep)
        return scaled_residual(
            x, self.ffn(self.norm2(x)), keep=self.drop_path.keep_scale(x))

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
