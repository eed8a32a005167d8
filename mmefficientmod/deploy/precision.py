"""Whether the CPU has bfloat16; how close outputs are to float32 ones."""
from typing import Optional

import torch


def _cpu_flags() -> str:
    try:
        with open('/proc/cpuinfo') as f:
            return f.read()
    except OSError:
        return ''


def cpu_has_bf16() -> bool:
    """Whether this CPU has native bfloat16 arithmetic (AVX512-BF16 or AMX)."""
    for probe in ('_is_avx512_bf16_supported', '_is_amx_tile_supported'):
        check = getattr(torch.cpu, probe, None)
        if check is not None and check():
            return True
    return any(f in _cpu_flags() for f in ('avx512_bf16', 'amx_bf16'))


def cpu_has_vnni() -> bool:
    """Whether this CPU sums int8 products without a saturating 16-bit
    step (AVX512-VNNI, AVX-VNNI or AMX)."""
    return any(f in _cpu_flags()
               for f in ('avx512_vnni', 'avx_vnni', 'amx_int8'))


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
