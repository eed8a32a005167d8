"""The inference form (``switch_to_deploy``), one forward pass with and without
autograd, bfloat16 agreement and torch.compile friendliness."""
import copy

import pytest
import torch
from _detseg_utils import TINY_ARCH
from parity import load_parity_fixture

from mmefficientmod import EfficientMod
from mmefficientmod.checkpoint import convert_released
from mmefficientmod.deploy import cosine_similarity


def backbones_from_fixture(fixture, arch):
    state = convert_released(fixture['checkpoint'])['state_dict']
    backbone_state = {
        k[len('backbone.'):]: v
        for k, v in state.items() if k.startswith('backbone.')
    }
    cls = EfficientMod(arch, out_indices=(3, ), out_type='avg_featmap').eval()
    cls.load_state_dict(backbone_state, strict=True)
    dense = EfficientMod(arch).eval()
    dense.load_state_dict(
        {
            k: v
            for k, v in backbone_state.items() if not k.startswith('norm.')
        },
        strict=True)
    return cls, dense, state['head.fc.weight'], state['head.fc.bias']


def randomised(model, seed=0):
    """Random values everywhere, LayerNorm affine and layer scale included,
    so that every fold is exercised."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(
                torch.randn(param.shape, generator=gen) * 0.2 +
                (1.0 if param.dim() == 1 else 0.0) * 0.5)
    return model


@pytest.mark.parametrize('arch', ['xxs', 's'])
def test_deploy_form_reproduces_parity_fixture(arch):
    fixture = load_parity_fixture(arch)
    cls, dense, head_w, head_b = backbones_from_fixture(fixture, arch)
    cls.switch_to_deploy()
    dense.switch_to_deploy()
    with torch.no_grad():
        for x, logits, features in zip(fixture['inputs'], fixture['logits'],
                                       fixture['features']):
            x = x.float()
            out = torch.nn.functional.linear(cls(x)[0], head_w, head_b)
            torch.testing.assert_close(out, logits.float(), rtol=0, atol=1e-4)
            outs = dense(x)
            assert len(outs) == 4
            for out, ref in zip(outs, features):
                torch.testing.assert_close(out, ref.float(), rtol=0, atol=1e-4)


def test_deploy_folds_parameters_and_is_idempotent():
    model = EfficientMod('xxs').eval()
    keys = set(model.state_dict())
    model.switch_to_deploy()
    model.switch_to_deploy()
    assert model.deploy
    deployed = set(model.state_dict())
    assert not any(k.endswith('layer_scale') for k in deployed)
    assert not any(
        '.blocks.' in k and ('norm.' in k or 'norm1.' in k or 'norm2.' in k)
        for k in deployed)
    # Attention qkv gains a bias from the folded norm shift; nothing else new.
    assert deployed - keys == {
        k
        for k in deployed if k.endswith('attn.qkv.bias')
    }
    assert len(deployed - keys) == 3  # xxs: 1 + 2 attention blocks


@pytest.mark.parametrize('arch', ['xxs', 's', 's_conv'])
def test_deploy_matches_eager_with_random_affine_parameters(arch):
    model = randomised(EfficientMod(arch, drop_path_rate=0.1)).eval()
    deployed = copy.deepcopy(model)
    deployed.switch_to_deploy()
    x = torch.randn(2, 3, 67, 45)
    with torch.no_grad():
        expected = model(x)
        got = deployed(x)
    for a, b in zip(got, expected):
        scale = b.abs().max().item()
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5 * max(scale, 1.0))


def test_same_outputs_with_and_without_autograd():
    """One forward pass: autograd, ``no_grad`` and ``inference_mode`` give
    the same outputs, and the input is left as it was."""
    model = randomised(EfficientMod('xxs')).eval()
    x = torch.randn(1, 3, 64, 64)
    x_copy = x.clone()
    with torch.no_grad():
        no_grad_out = model(x)
    with torch.inference_mode():
        inference_out = model(x)
    grad_out = model(x)
    assert torch.equal(x, x_copy)
    for a, b, c in zip(no_grad_out, inference_out, grad_out):
        torch.testing.assert_close(a, c.detach(), rtol=0, atol=0)
        torch.testing.assert_close(b, c.detach(), rtol=0, atol=0)


@pytest.mark.parametrize('arch', ['xxs', 's'])
@pytest.mark.parametrize('mode', ['cast', 'autocast'])
def test_bfloat16_logits_agree_with_float32(arch, mode):
    fixture = load_parity_fixture(arch)
    cls, _, head_w, head_b = backbones_from_fixture(fixture, arch)
    cls.switch_to_deploy()
    if mode == 'cast':
        cls.bfloat16()
    with torch.inference_mode():
        for x, logits in zip(fixture['inputs'], fixture['logits']):
            if mode == 'cast':
                feat = cls(x.float().bfloat16())[0]
            else:
                with torch.autocast('cpu', dtype=torch.bfloat16):
                    feat = cls(x.float())[0]
            out = torch.nn.functional.linear(feat.float(), head_w, head_b)
            cos = cosine_similarity(out, logits.float(), dim=1)
            assert cos.min().item() >= 0.999, cos
            # The predicted class is the float32 one.
            assert torch.equal(out.argmax(1), logits.float().argmax(1))


@pytest.mark.parametrize('deploy', [False, True])
def test_compiles_as_one_graph(deploy):
    """No graph breaks (fullgraph) in eager and deploy forms, with and
    without autograd; the cheap 'eager' backend checks the tracing only."""
    model = randomised(EfficientMod('xxs')).eval()
    if deploy:
        model.switch_to_deploy()
    compiled = torch.compile(model, backend='eager', fullgraph=True)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = model(x)
        got = compiled(x)
    # The compiled graph may order float operations differently.
    for a, b in zip(got, expected):
        atol = 1e-5 * max(b.abs().max().item(), 1.0)
        torch.testing.assert_close(a, b, rtol=0, atol=atol)
    if not deploy:
        compiled(x)[3].sum().backward()


def test_deploy_flag_builds_the_folded_form_for_folded_checkpoints():
    """A folded checkpoint rebuilds from a config with ``deploy=True``."""
    folded = EfficientMod(TINY_ARCH).eval()
    with torch.no_grad():  # non-trivial affine parts and layer scales
        for name, param in folded.named_parameters():
            param.add_(torch.randn_like(param) * 0.1)
    folded.switch_to_deploy()
    rebuilt = EfficientMod(TINY_ARCH, deploy=True).eval()
    assert rebuilt.deploy and all(block.deploy for stage in rebuilt.stages
                                  for block in stage.blocks)
    rebuilt.load_state_dict(folded.state_dict(), strict=True)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        for ours, theirs in zip(rebuilt(x), folded(x)):
            torch.testing.assert_close(ours, theirs)
    # The unfolded form's checkpoint does not fit the folded model.
    with pytest.raises(RuntimeError, match='layer_scale'):
        rebuilt.load_state_dict(
            EfficientMod(TINY_ARCH).state_dict(), strict=True)
