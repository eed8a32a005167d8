"""The fused oneDNN inference kernels against the public-op path."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from mmefficientmod import EfficientMod
from mmefficientmod.deploy import cosine_similarity
from mmefficientmod.models.layers import fused_ops

needs_kernels = pytest.mark.skipif(
    not fused_ops._OPS_AVAILABLE,
    reason='this torch build has no oneDNN fused kernels')


def randomised(model, seed=0):
    """Random values everywhere, affine parts and layer scales included."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(
                torch.randn(param.shape, generator=gen) * 0.2 +
                (0.5 if param.dim() == 1 else 0.0))
    return model


@pytest.fixture
def no_kernels(monkeypatch):
    """As on a torch build without the private oneDNN kernels."""
    monkeypatch.setattr(fused_ops, '_OPS_AVAILABLE', False)


def close(a, b, rel=1e-5):
    """Agreement to ``rel`` of the reference's scale."""
    atol = rel * max(b.abs().max().item(), 1.0)
    torch.testing.assert_close(a, b, rtol=0, atol=atol)


@needs_kernels
@torch.no_grad()
def test_kernels_match_the_public_ops():
    gen = torch.Generator().manual_seed(0)
    layer = nn.Linear(16, 48)
    conv = nn.Conv2d(16, 16, 7, padding=3, groups=16)
    x = torch.randn(2, 5, 6, 16, generator=gen)
    other = torch.randn(2, 5, 6, 48, generator=gen)
    assert fused_ops.fusable(x, layer.weight)
    close(fused_ops.linear(x, layer), layer(x))
    close(fused_ops.linear(x, layer, activation=True), F.gelu(layer(x)))
    close(fused_ops.linear_then(x, layer, other, 'add'), layer(x) + other)
    close(fused_ops.linear_then(x, layer, other, 'mul'), layer(x) * other)
    nchw = x.permute(0, 3, 1, 2)  # channels-last strides, as the blocks'
    close(fused_ops.conv_gelu(nchw, conv), F.gelu(conv(nchw)))
    close(fused_ops.conv_gelu(nchw.contiguous(), conv), F.gelu(conv(nchw)))


def test_public_ops_with_autograd_and_without_kernels(no_kernels):
    layer = nn.Linear(8, 8)
    x = torch.randn(3, 8)
    with torch.no_grad():
        assert not fused_ops.fusable(x, layer.weight)
        torch.testing.assert_close(
            fused_ops.linear(x, layer, activation=True), F.gelu(layer(x)))
    out = fused_ops.linear_then(x, layer, x, 'mul')
    assert out.grad_fn is not None


def test_not_fused_where_the_kernels_cannot_serve():
    layer = nn.Linear(8, 8)
    x = torch.randn(3, 8)
    assert not fused_ops.fusable(x, layer.weight)  # autograd on
    with torch.no_grad():
        assert not fused_ops.fusable(x.t(), layer.weight)  # not contiguous
        assert not fused_ops.fusable(x.double(), layer.weight.double())
        assert not fused_ops.fusable(x.bfloat16(), layer.weight)  # mixed
        with torch.autocast('cpu', dtype=torch.bfloat16):
            assert not fused_ops.fusable(x, layer.weight)


@needs_kernels
def test_row_chunks_compute_the_whole(monkeypatch):
    layer = nn.Linear(8, 32)
    x = torch.randn(2, 9, 11, 8)
    whole = F.gelu(layer(x)).detach()
    # 32 floats per row: blocks of 3 rows, the last one shorter.
    monkeypatch.setattr(fused_ops, 'CHUNK_BYTES', 3 * 32 * 4)
    with torch.no_grad():
        out = fused_ops.map_row_chunks(
            lambda t: fused_ops.linear(t, layer, activation=True), 32, x)
    assert out.shape == whole.shape
    close(out, whole)


@pytest.mark.parametrize('deploy', [False, True])
def test_model_with_and_without_kernels(deploy, monkeypatch):
    """Both inference paths (fused kernels, public ops) give the autograd
    path's features; small chunks exercise the row blocks."""
    model = randomised(EfficientMod('xxs')).eval()
    if deploy:
        model.switch_to_deploy()
    keys = list(model.state_dict())
    x = torch.randn(2, 3, 64, 64)
    reference = [o.detach() for o in model(x)]
    monkeypatch.setattr(fused_ops, 'CHUNK_BYTES', 2**14)
    with torch.inference_mode():
        fused = model(x)
    monkeypatch.setattr(fused_ops, '_OPS_AVAILABLE', False)
    with torch.inference_mode():
        plain = model(x)
    for a, b, ref in zip(fused, plain, reference):
        close(a, ref)
        close(b, ref, rel=1e-6)
    # Nothing is prepacked into the module: the saved layout is unchanged.
    assert list(model.state_dict()) == keys


@needs_kernels
@pytest.mark.skipif(
    torch.bfloat16 not in fused_ops._FUSED_DTYPES,
    reason='no bfloat16 oneDNN kernels on this CPU')
def test_bfloat16_fused_model_agrees_with_float32():
    model = randomised(EfficientMod('xxs')).eval()
    model.switch_to_deploy()
    x = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        expected = model(x)
        got = model.to(torch.bfloat16)(x.bfloat16())
    for a, b in zip(got, expected):
        assert cosine_similarity(a.float(), b).item() >= 0.999


def test_gelu_modulation_gradients_are_autograds():
    """The training modulation's hand-written backward gives autograd's
    gradients of ``gelu(h) * tile(context, r)``."""
    from mmefficientmod.models.layers.modulation import GeluModulation
    gen = torch.Generator().manual_seed(0)
    h = torch.randn(2, 5, 4, 3 * 8, generator=gen, requires_grad=True)
    context = torch.randn(2, 5, 4, 8, generator=gen, requires_grad=True)
    grad = torch.randn(2, 5, 4, 3 * 8, generator=gen)
    expected = F.gelu(h) * context.repeat(1, 1, 1, 3)
    out = GeluModulation.apply(h, context, 3)
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
    got = torch.autograd.grad(out, (h, context), grad)
    want = torch.autograd.grad(expected, (h, context), grad)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)
    assert torch.autograd.gradcheck(
        lambda a, b: GeluModulation.apply(a, b, 3),
        (h.detach().double().requires_grad_(),
         context.detach().double().requires_grad_()))


@pytest.mark.parametrize('deploy', [False, True])
def test_onnx_export_computes_every_block(deploy, tmp_path):
    """The exported graph computes what the model does, with layer scales
    large enough that a block left out of the graph would show (the
    default 1e-4 would hide it)."""
    pytest.importorskip('onnxruntime')
    from mmefficientmod.deploy import export_onnx, onnxruntime_session
    model = randomised(EfficientMod('xxs')).eval()
    if deploy:
        model.switch_to_deploy()
    path = str(tmp_path / 'xxs.onnx')
    export_onnx(model, path, (1, 3, 64, 64))
    x = torch.randn(2, 3, 64, 64)
    got = onnxruntime_session(path).run(None, {'input': x.numpy()})
    with torch.no_grad():
        expected = model(x)
    for a, b in zip(got, expected):
        close(torch.from_numpy(a), b)
