"""The model against the authors' own model file, on unseen (random) weights.

The authors' ``EfficientMod.py`` is loaded at run time from the reference
folder (``MMEFFICIENTMOD_REFERENCE``, see ``parity.py``); its random weights
reach our models through the project's checkpoint converter, as a released
checkpoint would. Every parameter is random, the LayerNorm affine parts and
the layer scales included, so that a block computing anything else than the
authors' shows in the outputs and in every gradient.
"""
import pytest
import torch
from _detseg_utils import load_tool
from parity import ARCHS, REPO, upstream_model_file

from mmefficientmod import EfficientMod
from mmefficientmod.checkpoint import convert_released
from mmefficientmod.models import build_model_from_config

authors_model = load_tool('analysis_tools/authors_model')
CONFIG = REPO + '/configs/efficientmod/efficientmod-{}_8xb256_in1k.py'
# Two batches: the training resolution, and an odd size whose maps need
# padding at every stride.
INPUT_SHAPES = ((2, 3, 224, 224), (1, 3, 97, 131))


@pytest.fixture(scope='module')
def upstream_file():
    return authors_model.load_upstream_module(upstream_model_file())


def randomised_upstream(upstream_file, arch: str, seed: int = 0):
    """The authors' classifier with random weights of unit-gain scale."""
    model = authors_model.build_upstream(upstream_file, arch)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            noise = torch.randn(param.shape, generator=gen)
            if param.dim() > 1:  # a linear or conv weight
                param.copy_(noise / param[0].numel()**0.5)
            elif name.endswith('bias'):
                param.copy_(0.1 * noise)
            else:  # LayerNorm weights and layer scales
                param.copy_(1 + 0.2 * noise if 'norm' in name else 0.5 +
                            0.1 * noise)
    return model


def ours_from(upstream):
    """Our classifier state dict, converted from the authors' model."""
    return convert_released({'model': upstream.state_dict()})['state_dict']


def build_classifier(arch: str):
    return build_model_from_config(
        CONFIG.format(arch.replace('_', '-')), init_weights=False)


def dense_backbone(arch: str, state: dict) -> EfficientMod:
    dense = EfficientMod(arch)
    dense.load_state_dict(
        {
            k[len('backbone.'):]: v
            for k, v in state.items()
            if k.startswith('backbone.') and not k.startswith('backbone.norm.')
        },
        strict=True)
    return dense


def upstream_stage_outputs(upstream, x: torch.Tensor):
    """The authors' logits and the (N, C, H, W) output of each stage's last
    block (before the downsample that ends their stage)."""
    features = []
    hooks = [
        layer.blocks[-1].register_forward_hook(
            lambda module, args, out: features.append(out.permute(0, 3, 1, 2)))
        for layer in upstream.layers
    ]
    try:
        logits = upstream(x)
    finally:
        for hook in hooks:
            hook.remove()
    return logits, features


@pytest.mark.parametrize('arch', ARCHS)
def test_outputs_match_the_authors_model(upstream_file, arch):
    upstream = randomised_upstream(upstream_file, arch).eval()
    state = ours_from(upstream)
    classifier = build_classifier(arch).eval()
    classifier.load_state_dict(state, strict=True)
    dense = dense_backbone(arch, state).eval()
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for shape in INPUT_SHAPES:
            x = torch.randn(shape, generator=gen)
            logits, features = upstream_stage_outputs(upstream, x)
            # A failure here would hide behind a tolerance as large as the
            # outputs: they are of order one.
            assert 0.1 < logits.abs().max() < 100
            torch.testing.assert_close(
                classifier(x, mode='tensor'), logits, rtol=0, atol=1e-4)
            outs = dense(x)
            assert len(outs) == len(features) == 4
            for out, ref in zip(outs, features):
                assert out.shape == ref.shape
                torch.testing.assert_close(out, ref, rtol=0, atol=1e-4)


# xxs and xs: the two archs trained without stochastic depth.
@pytest.mark.parametrize('arch', ['xxs', 'xs'])
def test_training_gradients_match_the_authors_model(upstream_file, arch):
    """One backward pass of both classifiers, every gradient compared (the
    authors' gradients renamed by the checkpoint converter)."""
    upstream = randomised_upstream(upstream_file, arch, seed=2).train()
    classifier = build_classifier(arch).train()
    classifier.load_state_dict(ours_from(upstream), strict=True)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    upstream(x).square().sum().backward()
    classifier(x, mode='tensor').square().sum().backward()
    expected = convert_released({
        'model': {
            name: param.grad
            for name, param in upstream.named_parameters()
        }
    })['state_dict']
    grads = dict(classifier.named_parameters())
    assert set(grads) == set(expected)
    for name, grad in expected.items():
        torch.testing.assert_close(
            grads[name].grad,
            grad,
            rtol=1e-4,
            atol=1e-5 * max(grad.abs().max().item(), 1.0),
            msg=name)
