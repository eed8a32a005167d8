"""tools/analysis_tools/precision_report.py on a classifier's val split,
with the data root given through ``--cfg-options``."""
import os.path as osp

import pytest
import torch
from _detseg_utils import REPO

from mmefficientmod.models import build_model_from_config

CONFIG = osp.join(REPO, 'configs', 'efficientmod',
                  'efficientmod-xxs_1xb32_embedded-64px.py')


def seeded_checkpoint(tmp_path) -> str:
    """A checkpoint of CONFIG's model with seeded random weights."""
    checkpoint = str(tmp_path / 'xxs.pth')
    torch.manual_seed(0)
    torch.save({'state_dict': build_model_from_config(CONFIG).state_dict()},
               checkpoint)
    return checkpoint


def test_val_report_reads_the_overridden_data_root(load_tool, tmp_path,
                                                   embedded_imagenet):
    report = load_tool('analysis_tools/precision_report')
    checkpoint = seeded_checkpoint(tmp_path)
    args = report.parse_args([
        CONFIG, checkpoint, '--precisions', 'fp32', '--threads', '2',
        '--cfg-options',
        f'val_dataloader.dataset.data_root={embedded_imagenet}'
    ])
    (row, ) = report.val_report(args)
    # 4 classes x 4 validation images of the embedded set
    assert row['data'] == 'val split (16 images)'
    assert row['precision'] == 'fp32'
    assert row['cos_min'] > 0.99999 and row['top1_agree'] == 1.0
    assert row['top1_acc'] == row['top1_acc_fp32']


def test_int8_is_calibrated_on_the_train_split(load_tool, tmp_path,
                                               embedded_imagenet):
    pytest.importorskip('nncf', reason='tools/install.sh installs nncf')
    report = load_tool('analysis_tools/precision_report')
    checkpoint = seeded_checkpoint(tmp_path)
    args = report.parse_args([
        CONFIG, checkpoint, '--precisions', 'int8', '--threads', '2',
        '--calib-batches', '1', '--cfg-options',
        f'val_dataloader.dataset.data_root={embedded_imagenet}',
        f'train_dataloader.dataset.data_root={embedded_imagenet}'
    ])
    (row, ) = report.val_report(args)
    # Calibration data given: 'auto' picks OpenVINO's static int8.
    assert row['engine'] == 'openvino'
    assert row['cos_min'] > 0.99
