"""Whether the CPU has bfloat16; how close outputs are to float32 ones."""
from typing import Optional

import torch


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
