"""The EfficientMod modulation block.

Tensors are channels-last (N, H, W, C) inside a stage, so every linear layer
works on the last dimension without a layout change; the depthwise convolution
takes a permuted *view* of that tensor (channels-last strides), which PyTorch's
convolution consumes without a copy and answers in the same layout, so the
permute back is a view as well. The context is never tiled: the value is
viewed as (..., r, C) and multiplied by the context broadcast over r.

``switch_to_deploy()`` turns a block into its inference form (see there).
"""
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from .deploy_utils import (fold_affine_into_linear, layer_norm_affine,
                           scale_linear_output, strip_layer_norm_affine)
from .fused_ops import conv_gelu, linear, linear_then, map_row_chunks
from .residual import DropPath, scaled_residual


class GeluModulation(torch.autograd.Function):
    """``gelu(h) * tile(context, r)`` for training, with fewer big tensors.

    Autograd would keep ``gelu(h)`` for the multiply's backward besides
    ``h`` for the GELU's; this keeps only ``h`` and the (r times smaller)
    context, computes the product in place of the GELU output, and
    recomputes the GELU in the backward pass. The gradients come from the
    same operations as autograd's (tested to agree); one expanded
    activation less is held per block (an s training step at batch 16
    peaked at 994 MB instead of 1157 MB), and one less is allocated in the
    forward pass, for one more GELU in the backward one.
    """

    @staticmethod
    def forward(ctx, h: torch.Tensor, context: torch.Tensor,
                ratio: int) -> torch.Tensor:
        ctx.save_for_backward(h, context)
        ctx.ratio = ratio
        out = F.gelu(h)
        return _tile_mul(out, context, ratio)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor):
        h, context = ctx.saved_tensors
        grad_h = grad_context = None
        if ctx.needs_input_grad[0]:
            grad_value = grad.reshape(*h.shape[:-1], ctx.ratio,
                                      -1) * context.unsqueeze(-2)
            grad_h = torch.ops.aten.gelu_backward(grad_value.view(h.shape), h)
        if ctx.needs_input_grad[1]:
            product = F.gelu(h).mul_(grad)
            grad_context = product.view(*h.shape[:-1], ctx.ratio, -1).sum(-2)
        return grad_h, grad_context, None


def _tile_mul(value: torch.Tensor,
              context: torch.Tensor,
              ratio: int,
              inplace: bool = True) -> torch.Tensor:
    """``value * tile(context, ratio)``, by broadcasting; in place into
    ``value`` when ``inplace``.

    Channel j of the value is multiplied by channel ``j mod C`` of the
    context: the value viewed as (..., r, C) times the context as (..., 1, C),
    so the tile is never built.
    """
    shape = value.shape
    tiled = value.view(*shape[:-1], ratio, context.shape[-1])
    context = context.unsqueeze(-2)
    out = tiled.mul_(context) if inplace else tiled * context
    return out.view(shape)


class ContextBranch(nn.Module):
    """Linear -> 7x7 depthwise conv -> GELU -> linear, on a channels-last map.

    Args:
        channels (int): Width C of the branch (input and output).
        kernel_size (int): Depthwise kernel size. Defaults to 7.
    """

    def __init__(self, channels: int, kernel_size: int = 7):
        super().__init__()
        self.fc_in = nn.Linear(channels, channels)
        self.dwconv = nn.Conv2d(
            channels,
            channels,
            kernel_size,
            padding=kernel_size // 2,
            groups=channels)
        self.fc_out = nn.Linear(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(self.spatial(linear(x, self.fc_in)), self.fc_out)

    def spatial(self, x: torch.Tensor) -> torch.Tensor:
        """Depthwise conv + GELU of an (N, H, W, C) map, returned as (N, H, W, C).

        The permutes are views: a contiguous (N, H, W, C) tensor is a
        channels-last (N, C, H, W) one, and the convolution answers in the
        layout it was given.
        """
        return conv_gelu(x.permute(0, 3, 1, 2),
                         self.dwconv).permute(0, 2, 3, 1)


class ModulationBlock(nn.Module):
    """EfficientMod block: ``x + gamma * fc_out(value * tile(context, r))``.

    Without autograd (``torch.no_grad()`` / ``torch.inference_mode()``) the
    activations, the modulation and the residual sum are fused into the
    linear layers and the depthwise conv on CPU (see :mod:`.fused_ops`), or
    else computed in place on fresh intermediates, which saves allocations
    and memory traffic. With autograd, the expanded value's GELU and
    modulation are one :class:`GeluModulation`, and the rest is out of
    place.

    Args:
        channels (int): Width C of the block.
        ratio (int): Expansion ratio r of the value branch. With ``r == 1``
            the value branch has no activation, as in the reference.
        kernel_size (int): Depthwise kernel of the context branch.
            Defaults to 7.
        drop_path (float): Stochastic depth rate. Defaults to 0.
        layer_scale_init_value (float): Initial value of the per-channel
            layer scale. Defaults to 1e-4.
        deploy (bool): Build the inference form directly (what
            :meth:`switch_to_deploy` makes): a norm without affine part and
            no layer scale. Defaults to False.
    """

    def __init__(self,
                 channels: int,
                 ratio: int,
                 kernel_size: int = 7,
                 drop_path: float = 0.,
                 layer_scale_init_value: float = 1e-4,
                 deploy: bool = False):
        super().__init__()
        self.channels = channels
        self.ratio = ratio
        self.deploy = deploy
        self.norm = nn.LayerNorm(channels, elementwise_affine=not deploy)
        self.fc_value = nn.Linear(channels, ratio * channels)
        self.context = ContextBranch(channels, kernel_size)
        self.fc_out = nn.Linear(ratio * channels, channels)
        if not deploy:
            self.layer_scale = nn.Parameter(
                torch.full((channels, ), float(layer_scale_init_value)))
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm(x)
        spatial = self.context.spatial(linear(y, self.context.fc_in))
        if self.ratio == 1:
            # Without expansion the value has no activation, and the
            # modulation is the epilogue of the context's last layer.
            modulated = linear_then(spatial, self.context.fc_out,
                                    linear(y, self.fc_value), 'mul')
            return self.output(modulated, x)
        context = linear(spatial, self.context.fc_out)
        return map_row_chunks(self.expand_and_output,
                              self.ratio * self.channels, y, context, x)

    def expand_and_output(self, y: torch.Tensor, context: torch.Tensor,
                          x: torch.Tensor) -> torch.Tensor:
        """The expanded value path of rows of ``y``: GELU of ``fc_value``,
        modulated by ``context``, then :meth:`output`."""
        if torch.jit.is_tracing():
            # The ONNX exporter needs public ops: it drops an autograd
            # Function's computation.
            modulated = _tile_mul(
                F.gelu(self.fc_value(y)), context, self.ratio, inplace=False)
        elif torch.is_grad_enabled():
            modulated = GeluModulation.apply(
                self.fc_value(y), context, self.ratio)
        else:
            # The fresh GELU output takes the modulation in place.
            modulated = _tile_mul(
                linear(y, self.fc_value, activation=True), context, self.ratio)
        return self.output(modulated, x)

    def output(self, modulated: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``x`` plus the layer-scaled (and dropped) ``fc_out(modulated)``."""
        keep = self.drop_path.keep_scale(x)
        if self.deploy and keep is None:  # layer scale folded into fc_out
            return linear_then(modulated, self.fc_out, x, 'add')
        layer_scale = None if self.deploy else self.layer_scale
        return scaled_residual(x, linear(modulated, self.fc_out), layer_scale,
                               keep)

    @torch.no_grad()
    def switch_to_deploy(self) -> None:
        """Fold the block into its inference form, in place.

        * The LayerNorm's affine part moves into the two linear layers that
          read its output, ``fc_value`` and ``context.fc_in``
          (``W (g * y + b) + c = (W diag g) y + (W b + c)``); ``norm`` keeps
          only the normalisation.
        * The layer scale moves into ``fc_out`` (``diag(gamma) W``,
          ``gamma * b``).

        The block then computes the same function up to float rounding. The
        two linear layers that share the normed input are deliberately *not*
        concatenated into one: on CPU the split outputs are strided, and the
        GELU and the depthwise convolution on them cost more than the one
        matrix multiply saves (measured; see the benchmark notes).
        """
        if self.deploy:
            return
        scale, shift = layer_norm_affine(self.norm)
        self.fc_value = fold_affine_into_linear(self.fc_value, scale, shift)
        self.context.fc_in = fold_affine_into_linear(self.context.fc_in, scale,
                                                     shift)
        self.norm = strip_layer_norm_affine(self.norm)
        scale_linear_output(self.fc_out, self.layer_scale)
        del self.layer_scale
        self.deploy = True
