"""Linear and depthwise-conv calls with their epilogue fused, for inference.

Without autograd, on CPU, PyTorch's oneDNN kernels can apply the op that
follows a linear layer (GELU, a residual add, the modulation multiply) or a
depthwise convolution (GELU) while the result is still in cache, instead of
in a second pass over memory; the linear kernel also adds the bias in its
epilogue, where ``addmm`` first copies the bias into every output row.
Measured on a 2-thread AVX512 Xeon: the fused depthwise 7x7 conv + GELU runs
in 0.4-0.8x the time of the two separate ops, a linear + GELU in 0.3-0.9x.

These kernels are private (``torch.ops.mkldnn``) and have no autograd, so
each function here uses them only when :func:`fusable` says so, and
otherwise computes the same thing with public ops (with autograd, under
tracing, export or ``torch.compile``, on other devices and dtypes, or on a
build without oneDNN). Weights are used as they are (prepacking them into
oneDNN's blocked layout measured no faster here), so the state dict is that
of the plain modules.
"""
from typing import Callable

import torch
import torch.nn as nn

from .activation import gelu


def _mkldnn_ops_available() -> bool:
    ops = torch.ops.mkldnn
    return (torch.backends.mkldnn.is_available()
            and hasattr(ops, '_linear_pointwise')
            and hasattr(ops._linear_pointwise, 'binary')
            and hasattr(ops, '_convolution_pointwise'))


_OPS_AVAILABLE = _mkldnn_ops_available()


def _bf16_supported() -> bool:
    check = getattr(torch.ops.mkldnn, '_is_mkldnn_bf16_supported', None)
    return bool(_OPS_AVAILABLE and check is not None and check())


_FUSED_DTYPES = (torch.float32, ) + (
    (torch.bfloat16, ) if _bf16_supported() else ())


def fusable(*tensors: torch.Tensor) -> bool:
    """Whether the oneDNN fused kernels may compute on ``tensors``.

    They may when the kernels exist and are enabled, autograd and autocast
    are off (the kernels have no autograd and no autocast rule), no tracer or
    compiler is recording (those need the public ops), and the tensors are
    contiguous CPU tensors of one dtype that the kernels serve.

    Args:
        *tensors (torch.Tensor): The kernel's inputs (activations and
            weights).
    """
    if (not _OPS_AVAILABLE or not torch.backends.mkldnn.enabled
            or torch.is_grad_enabled() or torch.is_autocast_enabled('cpu')
            or torch.jit.is_tracing() or torch.jit.is_scripting()
            or torch.compiler.is_compiling()):
        return False
    dtype = tensors[0].dtype
    return dtype in _FUSED_DTYPES and all(
        t.device.type == 'cpu' and t.dtype == dtype and t.is_contiguous()
        for t in tensors)


def linear(x: torch.Tensor,
           layer: nn.Linear,
           activation: bool = False) -> torch.Tensor:
    """``layer(x)``, followed by exact GELU when ``activation``.

    Args:
        x (torch.Tensor): Input, features last.
        layer (nn.Linear): The layer.
        activation (bool): Apply GELU to the output. Defaults to False.
    """
    if fusable(x, layer.weight):
        if activation:
            return torch.ops.mkldnn._linear_pointwise(x, layer.weight,
                                                      layer.bias, 'gelu', [],
                                                      'none')
        return torch.ops.mkldnn._linear_pointwise(x, layer.weight, layer.bias,
                                                  'none', [], None)
    out = layer(x)
    return gelu(out, not torch.is_grad_enabled()) if activation else out


def linear_then(x: torch.Tensor, layer: nn.Linear, other: torch.Tensor,
                op: str) -> torch.Tensor:
    """``layer(x) + other`` (``op='add'``) or ``layer(x) * other``
    (``op='mul'``), ``other`` having the output's shape.

    Args:
        x (torch.Tensor): Input, features last.
        layer (nn.Linear): The layer.
        other (torch.Tensor): The second operand, shaped as the output.
        op (str): ``'add'`` or ``'mul'``.
    """
    if fusable(x, other, layer.weight) and other.shape[-1] == layer.out_features \
            and other.shape[:-1] == x.shape[:-1]:
        return torch.ops.mkldnn._linear_pointwise.binary(
            x, other, layer.weight, layer.bias, op)
    out = layer(x)
    if torch.is_grad_enabled():
        return out + other if op == 'add' else out * other
    # ``out`` is a fresh tensor, so it may take the result.
    return out.add_(other) if op == 'add' else out.mul_(other)


def conv_gelu(x: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    """GELU of ``conv(x)``; ``x`` NCHW, contiguous in either memory format.

    Args:
        x (torch.Tensor): Input map (N, C, H, W).
        conv (nn.Conv2d): A convolution with zero padding.
    """
    channels_last = x.is_contiguous(memory_format=torch.channels_last)
    if fusable(x if not channels_last else x.permute(0, 2, 3, 1), conv.weight):
        return torch.ops.mkldnn._convolution_pointwise(
            x, conv.weight, conv.bias, conv.padding, conv.stride,
            conv.dilation, conv.groups, 'gelu', [], 'none')
    return gelu(conv(x), not torch.is_grad_enabled())


#: Target size of the widest intermediate of one chunk in
#: :func:`map_row_chunks`: small enough to stay in a core's L2 cache
#: (measured best at 3-6 MiB for the 6x-expanded value path of the first two
#: stages, batch 32; about 2x faster than one pass over the whole batch).
CHUNK_BYTES = 4 * 2**20


def map_row_chunks(fn: Callable[..., torch.Tensor], hidden_width: int,
                   *tensors: torch.Tensor) -> torch.Tensor:
    """``fn(*tensors)``, computed block of rows by block of rows.

    An expand-then-contract path (linear to ``hidden_width``, GELU, linear
    back) run over a whole batch writes and reads its wide intermediate
    through main memory; run over blocks of positions, the intermediate
    stays in cache. ``fn`` must treat positions (rows) independently.
    Without the fused kernels (:func:`fusable`), or when the tensors fit
    one block, ``fn`` runs once on the whole tensors.

    Args:
        fn (Callable): Maps row-aligned tensors (features last) to one
            tensor with the same leading shape.
        hidden_width (int): Width of ``fn``'s widest intermediate.
        *tensors (torch.Tensor): Inputs with the same leading shape.
    """
    first = tensors[0]
    rows = first.numel() // first.shape[-1]
    block = max(1, CHUNK_BYTES // (hidden_width * first.element_size()))
    if not fusable(*tensors) or rows <= block:
        return fn(*tensors)
    flat = [t.view(rows, t.shape[-1]) for t in tensors]
    out = None
    for start in range(0, rows, block):
        piece = fn(*(t[start:start + block] for t in flat))
        if out is None:
            out = piece.new_empty(rows, piece.shape[-1])
        out[start:start + piece.shape[0]] = piece
    return out.view(*first.shape[:-1], out.shape[-1])
