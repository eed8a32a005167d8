"""Reduced-precision helpers: PyTorch dtype casts, agreement measures."""
import contextlib
from typing import Optional

import torch
import torch.nn as nn

DTYPES = {
    'float32': torch.float32,
    'bfloat16': torch.bfloat16,
    'float16': torch.float16
}


def cpu_has_bf16() -> bool:
    """Whether this CPU has native bfloat16 arithmetic (AVX512-BF16 or AMX)."""
    for probe in ('_is_avx512_bf16_supported', '_is_amx_tile_supported'):
        check = getattr(torch.cpu, probe, None)
        if check is not None and check():
            return True
    try:
        with open('/proc/cpuinfo') as f:
            flags = f.read()
    except OSError:
        return False
    return 'avx512_bf16' in flags or 'amx_bf16' in flags


def default_precision_mode(device: str) -> str:
    """``'cast'`` on CPU, ``'autocast'`` on GPU (see :func:`to_precision`)."""
    return 'cast' if torch.device(device).type == 'cpu' else 'autocast'


def to_precision(model: nn.Module,
                 dtype: torch.dtype,
                 mode: str = 'cast') -> nn.Module:
    """Prepare ``model`` (in place) to run in ``dtype``.

    Args:
        model (nn.Module): The model, in float32.
        dtype (torch.dtype): ``float32``, ``bfloat16`` or ``float16``.
        mode (str): ``'cast'`` converts the weights, and the inputs must be
            cast too (:func:`cast_input`): every op runs in ``dtype``. This is
            the fastest on CPU (measured: about 2x float32 with AVX512-BF16;
            autocast's per-op casts cost more than they save there).
            ``'autocast'`` keeps float32 weights, and :func:`autocast`
            chooses per op; the safer choice on GPU. Fold a model
            (``switch_to_deploy``) *before* casting it, so that the folds are
            computed in float32.
    """
    if mode not in ('cast', 'autocast'):
        raise ValueError(f"mode must be 'cast' or 'autocast', got {mode!r}.")
    if mode == 'cast' and dtype != torch.float32:
        model.to(dtype)
    return model


def cast_input(x: torch.Tensor, dtype: torch.dtype, mode: str) -> torch.Tensor:
    return x.to(dtype) if mode == 'cast' else x


def autocast(device: str, dtype: torch.dtype, mode: str):
    """The autocast context for ``mode == 'autocast'``, else a no-op."""
    if mode != 'autocast' or dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=dtype)


def cosine_similarity(a: torch.Tensor,
                      b: torch.Tensor,
                      dim: Optional[int] = None) -> torch.Tensor:
    """Cosine similarity in float64 (of whole tensors when ``dim`` is None)."""
    a, b = a.double(), b.double()
    if dim is None:
        a, b = a.flatten(), b.flatten()
        dim = 0
    return torch.nn.functional.cosine_similarity(a, b, dim=dim)


def top1_agreement(logits: torch.Tensor, reference: torch.Tensor) -> float:
    """Fraction of rows whose arg-max class is the reference's."""
    return (logits.argmax(-1) == reference.argmax(-1)).float().mean().item()
