"""Residual sums with stochastic depth and layer scale in one pass."""
from typing import Optional

import torch
import torch.nn as nn


class DropPath(nn.Module):
    """Stochastic depth: drop a residual branch per sample while training.

    The same rule and random draws as mmcv's ``DropPath`` (a sample's branch
    is kept with probability ``1 - drop_prob`` and then scaled by
    ``1 / (1 - drop_prob)``), but the blocks ask for the per-sample factor
    (:meth:`keep_scale`) and fold it, with the layer scale, into a single
    multiply-add over the branch (:func:`scaled_residual`), where mmcv divides
    the whole branch and then multiplies it by the mask: two full passes
    (and their backward) less per block.

    Args:
        drop_prob (float): Probability of dropping the branch.
    """

    def __init__(self, drop_prob: float):
        super().__init__()
        self.drop_prob = drop_prob

    def keep_scale(self, x: torch.Tensor) -> Optional[torch.Tensor]:
        """The per-sample factor (0 or ``1 / keep_prob``), shaped (N, 1, ...)
        to broadcast over ``x``; None in eval mode or without dropping."""
        if not self.training or self.drop_prob == 0:
            return None
        keep_prob = 1 - self.drop_prob
        shape = (x.shape[0], ) + (1, ) * (x.dim() - 1)
        mask = (keep_prob +
                torch.rand(shape, dtype=x.dtype, device=x.device)).floor_()
        return mask.div_(keep_prob)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.keep_scale(x)
        return x if scale is None else x * scale

    def extra_repr(self) -> str:
        return f'drop_prob={self.drop_prob}'


def scaled_residual(x: torch.Tensor,
                    branch: torch.Tensor,
                    layer_scale: Optional[torch.Tensor] = None,
                    keep: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``x + branch * layer_scale * keep`` with one pass over the maps.

    The two factors are small (per channel, per sample) and are multiplied
    together first. Without autograd and factors the sum goes into
    ``branch``, which must then be a fresh intermediate.

    Args:
        x (torch.Tensor): The residual stream, channels last.
        branch (torch.Tensor): The branch output, shaped as ``x``.
        layer_scale (torch.Tensor, optional): Per-channel scale (C, ).
        keep (torch.Tensor, optional): Per-sample stochastic-depth factor,
            from :meth:`DropPath.keep_scale`.
    """
    if layer_scale is None:
        factor = keep
    else:
        factor = layer_scale if keep is None else keep * layer_scale
    if factor is not None:
        return torch.addcmul(x, branch, factor)
    if torch.is_grad_enabled():
        return x + branch
    return branch.add_(x)
