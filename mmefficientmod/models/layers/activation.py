"""The blocks' activation."""
import torch
import torch.nn.functional as F


def gelu(x: torch.Tensor, inplace: bool = False) -> torch.Tensor:
    """Exact (erf) GELU; in place when asked, which is only safe on a fresh
    intermediate and without autograd (the blocks ask for it under
    ``torch.no_grad()`` / ``torch.inference_mode()``)."""
    return torch.ops.aten.gelu_(x) if inplace else F.gelu(x)
