"""Where weights that do not fit are refused, and where a partial load is
the user's to ask for.

* The backbone itself, whoever loads it: weights under its prefix must be of
  its arch and network. ``strict=False`` may leave some of them out.
* This project's entry points (the backbone's ``init_cfg``,
  ``deploy.load_weights``, the distillation teacher): every tensor.
* An explicit ``strict=False`` of torch or mmengine is honoured as they do.
(The configs' hook in test and training runs: test_bad_inputs_e2e.py.)
"""
import copy
import os.path as osp

import pytest
import torch
from _detseg_utils import DET_EMBEDDED, REPO
from mmengine.logging import MMLogger
from mmengine.runner import load_checkpoint

from mmefficientmod import EfficientMod
from mmefficientmod.checkpoint import CheckpointMismatchError
from mmefficientmod.deploy import load_weights
from mmefficientmod.models.from_config import build_model_from_config

CLASSIFIER = osp.join(REPO, 'configs', 'efficientmod',
                      'efficientmod-xxs_1xb32_embedded-64px.py')


@pytest.fixture(scope='module')
def models():
    return dict(
        detector=build_model_from_config(DET_EMBEDDED, init_weights=False),
        classifier=build_model_from_config(CLASSIFIER, init_weights=False))


def save(tmp_path, name, state_dict):
    path = tmp_path / name
    torch.save({'state_dict': state_dict, 'meta': {}}, path)
    return str(path)


def prefixed(state_dict, prefix='backbone.'):
    return {prefix + k: v for k, v in state_dict.items()}


def test_explicit_strict_false_loads_the_part_given(models):
    detector = copy.deepcopy(models['detector'])
    source = EfficientMod('xxs')
    partial = prefixed(source.state_dict())
    result = detector.load_state_dict(partial, strict=False)
    assert torch.equal(detector.backbone.stem.conv.weight,
                       source.stem.conv.weight)
    assert result.missing_keys and not any(
        k.startswith('backbone.') for k in result.missing_keys)
    # Part of the backbone alone, too.
    stem_only = {k: v for k, v in partial.items() if '.stem.' in f'.{k}'}
    result = detector.load_state_dict(stem_only, strict=False)
    assert any(k.startswith('backbone.stages.') for k in result.missing_keys)


def test_mmengine_load_checkpoint_strict_false_logs_missing_keys(
        models, tmp_path, capsys):
    detector = copy.deepcopy(models['detector'])
    classifier = models['classifier']
    path = save(tmp_path, 'cls.pth', classifier.state_dict())
    logger = MMLogger.get_instance('test_strict_false')
    load_checkpoint(detector, path, strict=False, logger=logger)
    assert torch.equal(detector.backbone.stem.conv.weight,
                       classifier.backbone.stem.conv.weight)
    logged = capsys.readouterr().out
    assert 'missing keys' in logged and 'roi_head' in logged


def test_strict_true_is_torchs_own_refusal(models):
    detector = copy.deepcopy(models['detector'])
    partial = prefixed(EfficientMod('xxs').state_dict())
    with pytest.raises(RuntimeError, match='Missing key'):
        detector.load_state_dict(partial)


def test_backbone_refuses_another_arch_even_with_strict_false(models):
    detector = copy.deepcopy(models['detector'])
    before = detector.backbone.stem.conv.weight.clone()
    s_weights = prefixed(EfficientMod('s').state_dict())
    for strict in (True, False):
        with pytest.raises(CheckpointMismatchError) as info:
            detector.load_state_dict(s_weights, strict=strict)
        message = str(info.value)
        assert 'EfficientMod-s backbone alone' in message, message
        assert 'the model is an EfficientMod-xxs' in message
        assert "model.backbone.arch='s'" in message
        assert len(message) < 1500
    assert torch.equal(detector.backbone.stem.conv.weight, before)


def test_backbone_refuses_a_bigger_arch_whose_first_blocks_fit():
    """xs into a custom arch with xs's widths but fewer blocks: no shape
    differs, yet the extra blocks would be dropped without a word."""
    small = dict(
        widths=[32, 64, 144, 288],
        depths=[1, 1, 1, 1],
        attention_depths=[0, 0, 1, 1],
        ratios=[1, 4],
        attention_mlp_ratios=[4, 4, 4, 4])
    with pytest.raises(CheckpointMismatchError, match='no place'):
        EfficientMod(small).load_state_dict(
            EfficientMod('xs').state_dict(), strict=False)


def test_backbone_refuses_another_network(models):
    torchvision = pytest.importorskip('torchvision')
    resnet = prefixed(torchvision.models.resnet18().state_dict())
    with pytest.raises(CheckpointMismatchError, match='ResNet-style'):
        copy.deepcopy(models['detector']).load_state_dict(resnet, strict=False)


def test_deep_copy_keeps_the_check(models):
    """mmengine's EMA model is a deep copy, loaded under 'module.'."""
    ema = torch.nn.ModuleDict(dict(module=copy.deepcopy(models['detector'])))
    s_weights = prefixed(EfficientMod('s').state_dict(), 'module.backbone.')
    with pytest.raises(CheckpointMismatchError, match='EfficientMod-s'):
        ema.load_state_dict(s_weights, strict=False)


def test_folded_checkpoint_names_the_form(tmp_path):
    folded = EfficientMod('xxs')
    folded.switch_to_deploy()
    path = save(tmp_path, 'folded.pth', folded.state_dict())
    with pytest.raises(CheckpointMismatchError, match='deploy=True'):
        load_checkpoint(EfficientMod('xxs'), path, strict=False)
    load_checkpoint(EfficientMod('xxs', deploy=True), path, strict=True)


def test_classifier_final_norm_is_not_a_misfit(models, tmp_path):
    """A classifier's backbone has the final norm a detector's lacks."""
    classifier = models['classifier'].state_dict()
    assert 'backbone.norm.weight' in classifier
    copy.deepcopy(models['detector']).load_state_dict(classifier, strict=False)


def test_init_cfg_refuses_another_arch_and_missing_weights(tmp_path):
    xs = save(tmp_path, 'xs.pth', prefixed(EfficientMod('xs').state_dict()))
    with pytest.raises(CheckpointMismatchError, match='EfficientMod-xs'):
        EfficientMod(
            's', init_cfg=dict(type='Pretrained',
                               checkpoint=xs)).init_weights()
    partial = prefixed(EfficientMod('xxs').state_dict())
    del partial['backbone.stages.3.blocks.3.ffn.fc2.weight']
    path = save(tmp_path, 'partial.pth', partial)
    backbone = EfficientMod(
        'xxs', init_cfg=dict(type='Pretrained', checkpoint=path))
    with pytest.raises(CheckpointMismatchError, match='1 of the model'):
        backbone.init_weights()


def test_load_weights_refuses_a_checkpoint_of_another_task(models, tmp_path):
    path = save(tmp_path, 'cls.pth', models['classifier'].state_dict())
    with pytest.raises(CheckpointMismatchError) as info:
        load_weights(copy.deepcopy(models['detector']), path)
    assert 'image classifier' in str(info.value)
    assert "init_cfg=dict(type='Pretrained'" in str(info.value)
    load_weights(copy.deepcopy(models['classifier']), path)  # fits
