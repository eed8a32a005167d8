"""Weights that do not fit a model with an EfficientMod are refused.

Through every way the stack loads a checkpoint into a built model:
mmengine's ``load_checkpoint`` (the inferencers, ``get_model``, the
runner's ``load_from``), torch's ``load_state_dict`` (also with
``strict=False``), a deep copy (the EMA model) and the backbone's own
``init_cfg``. The message says what the file holds, how many tensors are
missing and the fix; the documented opt-out loads the part that fits.
(The libraries' tools/test.py and inferencers: test_strict_loading_e2e.py.)
"""
import copy
import os.path as osp
import re

import pytest
import torch
from _detseg_utils import DET_EMBEDDED, REPO, SEG_EMBEDDED
from mmengine.runner import load_checkpoint

from mmefficientmod import EfficientMod
from mmefficientmod.checkpoint.strict_loading import (PARTIAL_LOAD_ENV,
                                                      CheckpointMismatchError,
                                                      allow_partial_load)
from mmefficientmod.models.from_config import build_model_from_config

CLASSIFIER = osp.join(REPO, 'configs', 'efficientmod',
                      'efficientmod-xxs_1xb32_embedded-64px.py')


@pytest.fixture(scope='module')
def models():
    """Built (not initialised) models of each task, xxs."""
    return dict(
        detector=build_model_from_config(DET_EMBEDDED),
        segmentor=build_model_from_config(SEG_EMBEDDED),
        classifier=build_model_from_config(CLASSIFIER))


def save(tmp_path, name, state_dict):
    path = tmp_path / name
    torch.save({'state_dict': state_dict, 'meta': {}}, path)
    return str(path)


def refused(model, path):
    with pytest.raises(CheckpointMismatchError) as info:
        load_checkpoint(model, path, map_location='cpu')
    return str(info.value)


def missing_count(message):
    found = re.search(r"(\d+) of the model's (\d+) tensors are missing",
                      message)
    assert found, message
    return int(found.group(1)), int(found.group(2))


def test_whole_model_checkpoint_loads(models, tmp_path):
    for name, model in models.items():
        path = save(tmp_path, f'{name}.pth', model.state_dict())
        load_checkpoint(model, path, map_location='cpu')  # no error


def test_classifier_checkpoint_into_a_detector(models, tmp_path):
    path = save(tmp_path, 'cls.pth', models['classifier'].state_dict())
    message = refused(models['detector'], path)
    assert path in message
    assert 'EfficientMod-xxs image classifier' in message
    assert 'detector' in message
    missing, total = missing_count(message)
    backbone = len(models['detector'].backbone.state_dict())
    assert missing == total - backbone  # all but the backbone
    assert "init_cfg=dict(type='Pretrained'" in message
    assert PARTIAL_LOAD_ENV in message


def test_backbone_only_checkpoint_into_a_segmentor(models, tmp_path):
    backbone = models['segmentor'].backbone.state_dict()
    path = save(tmp_path, 'backbone.pth', backbone)
    message = refused(models['segmentor'], path)
    # Keys without the backbone. prefix: nothing of the model loads.
    assert 'EfficientMod-xxs backbone alone' in message
    missing, total = missing_count(message)
    assert missing == total


def test_another_arch_is_named(models, tmp_path):
    s_backbone = EfficientMod('s').state_dict()
    state = {f'backbone.{k}': v for k, v in s_backbone.items()}
    state.update((k, v) for k, v in models['detector'].state_dict().items()
                 if not k.startswith('backbone.'))
    path = save(tmp_path, 's.pth', state)
    message = refused(models['detector'], path)
    assert 'EfficientMod-s detector' in message
    assert 'the model is an EfficientMod-xxs detector' in message
    assert 'have other shapes' in message
    assert "model.backbone.arch='s'" in message
    assert len(message) < 2000  # not a dump of every key


def test_other_library_model_is_named(models, tmp_path):
    torchvision = pytest.importorskip('torchvision')
    path = tmp_path / 'resnet18.pth'
    torch.save(torchvision.models.resnet18().state_dict(), path)
    message = refused(models['detector'], str(path))
    assert 'ResNet-style network' in message
    assert 'no EfficientMod weights' in message
    missing, total = missing_count(message)
    assert missing == total


def test_released_layout_names_the_converter(models, tmp_path):
    state = {
        'patch_embed.proj.weight': torch.zeros(32, 3, 7, 7),
        'head.weight': torch.zeros(4, 256)
    }
    path = tmp_path / 'released.pth'
    torch.save({'model': state, 'epoch': 3}, path)
    message = refused(models['classifier'], str(path))
    assert "authors' released ImageNet" in message
    assert 'efficientmod_to_mm.py' in message


def test_folded_checkpoint_into_training_form(tmp_path):
    backbone = EfficientMod('xxs')
    folded = copy.deepcopy(backbone)
    folded.switch_to_deploy()
    path = save(tmp_path, 'folded.pth', folded.state_dict())
    message = refused(backbone, path)
    assert 'folded inference form' in message
    assert 'deploy=True' in message
    load_checkpoint(EfficientMod('xxs', deploy=True), path)  # the fix


def test_torch_load_state_dict_is_checked_too(models):
    state = models['classifier'].state_dict()
    for strict in (True, False):
        with pytest.raises(CheckpointMismatchError, match='image classifier'):
            models['detector'].load_state_dict(state, strict=strict)


def test_deep_copy_is_checked(models):
    """mmengine's EMA model is a deep copy of the model."""
    ema = copy.deepcopy(models['detector'])
    with pytest.raises(CheckpointMismatchError):
        load_checkpoint_state(ema, models['classifier'].state_dict())


def load_checkpoint_state(model, state):
    from mmengine.runner.checkpoint import load_state_dict
    load_state_dict(model, state)


def test_nested_model_is_checked_at_its_root():
    outer = torch.nn.Sequential(
        torch.nn.Sequential(EfficientMod('xxs')), torch.nn.Linear(2, 2))
    state = outer.state_dict()
    outer.load_state_dict(state)
    del state['1.weight']
    with pytest.raises(CheckpointMismatchError, match='1 of the model'):
        outer.load_state_dict(state, strict=False)


def test_init_cfg_with_another_arch_names_it(tmp_path):
    path = save(tmp_path, 'xs.pth', {
        f'backbone.{k}': v
        for k, v in EfficientMod('xs').state_dict().items()
    })
    backbone = EfficientMod(
        's', init_cfg=dict(type='Pretrained', checkpoint=path))
    with pytest.raises(CheckpointMismatchError) as info:
        backbone.init_weights()
    message = str(info.value)
    assert 'EfficientMod-xs backbone' in message and len(message) < 2000


def test_opt_out_by_environment(models, tmp_path, monkeypatch, capsys):
    path = save(tmp_path, 'cls.pth', models['classifier'].state_dict())
    detector = copy.deepcopy(models['detector'])
    monkeypatch.setenv(PARTIAL_LOAD_ENV, '1')
    load_checkpoint(detector, path, map_location='cpu')
    expected = models['classifier'].backbone.stem.conv.weight
    assert torch.equal(detector.backbone.stem.conv.weight, expected)


def test_opt_out_in_python(models, tmp_path):
    path = save(tmp_path, 'cls.pth', models['classifier'].state_dict())
    detector = copy.deepcopy(models['detector'])
    with allow_partial_load():
        load_checkpoint(detector, path, map_location='cpu')
    with pytest.raises(CheckpointMismatchError):
        load_checkpoint(detector, path, map_location='cpu')


def test_extra_keys_alone_are_accepted(models, tmp_path):
    state = dict(models['classifier'].state_dict())
    state['teacher.fc.weight'] = torch.zeros(2, 2)
    load_checkpoint(models['classifier'], save(tmp_path, 'x.pth', state))
