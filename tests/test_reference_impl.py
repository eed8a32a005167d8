"""The test-only twin implementation reproduces the reference as well.

``ReferenceEfficientMod`` is what other tests check the optimised backbone
against (e.g. training gradients), so it must reproduce the fixtures too.
"""
import pytest
import torch
from parity import load_parity_fixture
from reference_twin import ReferenceClassifier, ReferenceEfficientMod

from mmefficientmod.checkpoint import convert_checkpoint


@pytest.mark.parametrize('arch', ['xxs', 's'])
def test_reference_impl_matches_parity_fixture(arch):
    fixture = load_parity_fixture(arch)
    state = convert_checkpoint(fixture['checkpoint'])['state_dict']
    classifier = ReferenceClassifier(arch).eval()
    classifier.load_classifier_state_dict(state)
    dense = ReferenceEfficientMod(arch).eval()
    backbone_state = {
        k[len('backbone.'):]: v
        for k, v in state.items()
        if k.startswith('backbone.') and not k.startswith('backbone.norm.')
    }
    dense.load_state_dict(backbone_state, strict=True)
    with torch.no_grad():
        for x, logits, features in zip(fixture['inputs'], fixture['logits'],
                                       fixture['features']):
            x = x.float()
            torch.testing.assert_close(
                classifier(x), logits.float(), rtol=0, atol=1e-4)
            outs = dense(x)
            assert len(outs) == 4
            for out, ref in zip(outs, features):
                assert out.shape == ref.shape
                torch.testing.assert_close(out, ref.float(), rtol=0, atol=1e-4)


def test_reference_impl_out_indices_and_state_dict_compatibility():
    from mmefficientmod import EfficientMod
    ours = EfficientMod('xxs', out_indices=(1, 3)).eval()
    ref = ReferenceEfficientMod('xxs', out_indices=(1, 3)).eval()
    # Same parameter names: one state dict loads into both.
    ref.load_state_dict(ours.state_dict(), strict=True)
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        a, b = ours(x), ref(x)
    assert [t.shape for t in a] == [t.shape for t in b] == [(1, 64, 8, 12),
                                                            (1, 256, 2, 3)]
    for p, q in zip(a, b):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-5)
