"""The two commonest config mistakes give a clear error, in every tool.

* Widths: changing ``arch`` without the ``in_channels`` of the neck or head
  that reads the backbone.
* Class counts: heads, ``data_preprocessor.num_classes`` and the dataset
  disagreeing.

The checks are pure functions of the config (tested here on the project's
own configs); ``EfficientModConfigCheckHook``, registered by those configs,
runs them inside mmdet's and mmpretrain's own ``tools/train.py``.
"""
import glob
import os.path as osp
import re
import sys

import mmdet
import mmpretrain
import pytest
from _detseg_utils import REPO, run
from mmengine.config import Config

from mmefficientmod.engine import (ConfigError, check_config,
                                   class_count_error, width_errors)

MASK_RCNN = osp.join(REPO, 'configs', 'mask_rcnn',
                     'mask-rcnn_efficientmod-xxs_fpn_1x_coco.py')
SEM_FPN = osp.join(REPO, 'configs', 'sem_fpn',
                   'fpn_efficientmod-xs_8xb4-40k_ade20k-512x512.py')
IMAGENET = osp.join(REPO, 'configs', 'efficientmod',
                    'efficientmod-xxs_8xb256_in1k.py')


@pytest.mark.parametrize(
    'config',
    sorted(glob.glob(osp.join(REPO, 'configs', '*', '*.py'))),
    ids=osp.basename)
def test_every_project_config_passes_and_registers_the_hook(config):
    cfg = Config.fromfile(config)
    check_config(cfg)
    assert {'type': 'EfficientModConfigCheckHook'} in cfg.custom_hooks


def test_arch_changed_without_the_neck_widths():
    cfg = Config.fromfile(MASK_RCNN)
    cfg.model.backbone.arch = 'xs'
    errors = width_errors(cfg.model)
    assert len(errors) == 1
    message = errors[0]
    assert "arch 'xs'" in message
    assert 'widths [32, 64, 144, 288]' in message  # the arch's outputs
    assert 'model.neck.in_channels=[32, 64, 128, 256]' in message  # offending
    assert '--cfg-options model.neck.in_channels=[32,64,144,288]' in message
    with pytest.raises(ConfigError, match='model.neck.in_channels'):
        check_config(cfg)


def test_out_indices_changed_without_the_neck_widths():
    cfg = Config.fromfile(SEM_FPN)
    cfg.model.backbone.out_indices = (1, 2, 3)
    message, = width_errors(cfg.model)
    assert 'out_indices=(1, 2, 3)' in message
    assert 'Set model.neck.in_channels=[64, 144, 288]' in message


def test_heads_reading_the_backbone_directly():
    backbone = dict(type='EfficientMod', arch='s', out_indices=(0, 1, 2, 3))
    upernet = dict(
        backbone=backbone,
        decode_head=dict(
            in_channels=[32, 64, 128, 256], in_index=[0, 1, 2, 3]),
        auxiliary_head=dict(in_channels=144, in_index=2))
    message, = width_errors(upernet)
    assert 'model.decode_head.in_channels=[32, 64, 144, 312]' in message
    deeplab = dict(
        backbone=backbone,
        decode_head=dict(in_channels=312, in_index=3, c1_in_channels=48))
    message, = width_errors(deeplab)
    assert 'Set model.decode_head.c1_in_channels=32' in message
    classifier = dict(
        backbone=dict(
            type='EfficientMod',
            arch='xs',
            out_indices=(3, ),
            out_type='avg_featmap'),
        neck=None,
        head=dict(in_channels=256, num_classes=10))
    message, = width_errors(classifier)
    assert 'Set model.head.in_channels=288' in message
    assert width_errors(
        dict(
            backbone=dict(type='ResNet', depth=50),
            neck=dict(in_channels=[1, 2]))) == []


def test_head_classes_changed_without_data_preprocessor():
    cfg = Config.fromfile(IMAGENET)
    cfg.model.head.num_classes = 10
    message = class_count_error(cfg)
    assert 'model.head.num_classes=10' in message
    assert 'data_preprocessor.num_classes=1000' in message
    with pytest.raises(ConfigError, match='Class count mismatch'):
        check_config(cfg)
    cfg.data_preprocessor.num_classes = 10
    assert class_count_error(cfg) is None
    # Against the dataset, every place to change is named.
    message = class_count_error(cfg, classes=['a', 'b', 'c'])
    assert re.search(
        r'model.head.num_classes=3 data_preprocessor'
        r'.num_classes=3', message)


def run_python(script, *args):
    return run([sys.executable, script, *args], check=False)


def mim_tool(package, name):
    path = osp.join(osp.dirname(package.__file__), '.mim', 'tools', name)
    if not osp.isfile(path):
        pytest.skip(f'{package.__name__} ships no .mim/tools/{name}')
    return path


@pytest.mark.e2e
def test_width_error_through_mmdets_own_train_tool(tmp_path, tiny_data):
    from _detseg_utils import det_overrides, write_config
    coco, _ = tiny_data
    config = write_config(
        tmp_path / 'det.py',
        osp.join(REPO, 'configs', 'mask_rcnn',
                 'mask-rcnn_efficientmod-xxs_fpn_embedded.py'),
        det_overrides(coco))
    proc = run_python(
        mim_tool(mmdet, 'train.py'), config, '--work-dir',
        str(tmp_path / 'work'), '--cfg-options', 'model.backbone.arch=s')
    assert proc.returncode != 0
    assert 'ConfigError' in proc.stdout, proc.stdout[-3000:]
    assert 'Set model.neck.in_channels=[32, 64, 144, 312]' in proc.stdout
    assert 'to have 128 channels' not in proc.stdout  # failed before that


@pytest.mark.e2e
def test_class_error_through_mmpretrains_own_train_tool(
        tmp_path, embedded_imagenet):
    root = embedded_imagenet
    config = osp.join(REPO, 'configs', 'efficientmod',
                      'efficientmod-xxs_distill_1xb8_embedded-64px.py')
    data = [
        f'{split}_dataloader.dataset.data_root={root}'
        for split in ('train', 'val', 'test')
    ]
    proc = run_python(
        mim_tool(mmpretrain, 'train.py'), config, '--work-dir',
        str(tmp_path / 'work'), '--cfg-options', 'model.head.num_classes=7',
        *data)
    assert proc.returncode != 0
    assert 'Class count mismatch' in proc.stdout, proc.stdout[-3000:]
    assert 'model.head.num_classes=7' in proc.stdout
    assert re.search(r'data_preprocessor.num_classes=\d+', proc.stdout)
    assert 'LabelSmoothLoss requires' not in proc.stdout
