"""Model complexity as the paper counts it (multiply-adds)."""
import torch
import torch.nn as nn
from mmengine.analysis import FlopAnalyzer
from mmengine.analysis.jit_handles import get_shape


def sdpa_flop_jit(inputs, outputs) -> int:
    """Multiply-adds of ``scaled_dot_product_attention``: q k^T, then (.) v.

    mmengine's counter has no handle for the fused op and would skip it,
    under-counting the attention stages.
    """
    q, k, v = (get_shape(x) for x in inputs[:3])
    *batch, length, dims = q
    batch_size = 1
    for size in batch:
        batch_size *= size
    return batch_size * length * k[-2] * (dims + v[-1])


def count_flops(module: nn.Module, inputs: torch.Tensor) -> int:
    """Multiply-adds of ``module(inputs)``, attention included."""
    with torch.no_grad():
        analyzer = FlopAnalyzer(module, inputs)
        analyzer.set_op_handle('aten::scaled_dot_product_attention',
                               sdpa_flop_jit)
        analyzer.unsupported_ops_warnings(False).uncalled_modules_warnings(
            False)
        return analyzer.total()
