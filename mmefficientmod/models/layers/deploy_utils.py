"""Exact algebraic folds used by the blocks' ``switch_to_deploy``.

All of them rewrite parameters only; the function a block computes is the
same up to float rounding.
"""
from typing import Optional

import torch
import torch.nn as nn


@torch.no_grad()
def fold_affine_into_linear(linear: nn.Linear, scale: torch.Tensor,
                            shift: Optional[torch.Tensor]) -> nn.Linear:
    """A linear layer computing ``linear(scale * y + shift)`` from ``y``.

    ``W (s * y + t) + b = (W diag(s)) y + (W t + b)``; this is how a
    LayerNorm's affine part moves into the linear layer that follows it.
    """
    weight = linear.weight * scale
    bias = linear.bias.clone() if linear.bias is not None else None
    if shift is not None:
        extra = linear.weight @ shift
        bias = extra if bias is None else bias + extra
    folded = nn.Linear(
        linear.in_features,
        linear.out_features,
        bias=bias is not None,
        device=weight.device,
        dtype=weight.dtype)
    folded.weight.copy_(weight)
    if bias is not None:
        folded.bias.copy_(bias)
    return folded


@torch.no_grad()
def scale_linear_output(linear: nn.Linear, scale: torch.Tensor) -> None:
    """In place: ``linear`` becomes ``scale * linear(x)`` (per output channel)."""
    linear.weight.mul_(scale[:, None])
    if linear.bias is not None:
        linear.bias.mul_(scale)


def layer_norm_affine(norm: nn.LayerNorm):
    """(weight, bias) of a LayerNorm, ones/zeros when it has no affine part."""
    channels = norm.normalized_shape[-1]
    weight = norm.weight if norm.weight is not None else torch.ones(channels)
    bias = norm.bias if norm.bias is not None else None
    return weight, bias


@torch.no_grad()
def strip_layer_norm_affine(norm: nn.LayerNorm) -> nn.LayerNorm:
    """A LayerNorm with the same shape and eps, without weight and bias."""
    return nn.LayerNorm(
        norm.normalized_shape, eps=norm.eps, elementwise_affine=False)
