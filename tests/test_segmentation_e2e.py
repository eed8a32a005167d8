"""Semantic FPN + EfficientMod-xxs end to end on the embedded ADE20K, through
tools/train.py and tools/test.py: train, checkpoint, a run killed mid-training
and resumed with --resume (ending with exactly the weights of an
uninterrupted run), test with --out / --show-dir, and mmseg's own test tool.
"""
import json
import os.path as osp
import pickle

import numpy as np
import pytest
import torch
from _detseg_utils import (REPO, files, state_dict_of, tiny_seg_config, tool,
                           write_config)
from PIL import Image

from mmefficientmod.checkpoint.safe_load import load_checkpoint

# Trains models or starts tools in subprocesses.
pytestmark = pytest.mark.e2e

KILL_HOOK = '''
import os
import signal

from mmengine.hooks import Hook
from mmengine.registry import HOOKS


@HOOKS.register_module()
class KillAtIterHook(Hook):
    """Simulate a crash: SIGKILL this process right after iteration
    ``at`` (a checkpoint hook, if due, has already run)."""
    priority = 'LOWEST'

    def __init__(self, at):
        self.at = at

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        if runner.iter + 1 == self.at:
            os.kill(os.getpid(), signal.SIGKILL)
'''

MAX_ITERS = 6


@pytest.fixture(scope='module')
def seg(tmp_path_factory, tiny_data):
    root = tmp_path_factory.mktemp('seg')
    _, ade = tiny_data
    (root / 'kill_hook.py').write_text(KILL_HOOK)
    body = f'''
# No dropout: the uninterrupted and the resumed run must be comparable
# exactly (dropout draws from torch's global generator).
model = dict(decode_head=dict(dropout_ratio=0.0))
train_cfg = dict(max_iters={MAX_ITERS}, val_interval={MAX_ITERS})
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=2),
    dict(type='CosineAnnealingLR', T_max={MAX_ITERS - 2}, eta_min=1e-5,
         by_epoch=False, begin=2, end={MAX_ITERS}),
]
default_hooks = dict(logger=dict(interval=1),
                     checkpoint=dict(interval=2, max_keep_ckpts=5))
'''
    cfg = write_config(root / 'seg_cfg.py', tiny_seg_config(str(root), ade),
                       body)
    killed_cfg = write_config(
        root / 'seg_killed_cfg.py', cfg, '''
custom_imports = dict(imports=['mmefficientmod', 'kill_hook'],
                      allow_failed_imports=False)
custom_hooks = [dict(type='KillAtIterHook', at=3)]
''')
    # The uninterrupted reference run.
    full = root / 'full'
    log = tool('train.py', cfg, '--work-dir', full).stdout
    return dict(
        root=root,
        ade=ade,
        cfg=cfg,
        killed_cfg=killed_cfg,
        full=full,
        full_log=log,
        pythonpath=f'{root}:{REPO}')


def test_train_logs_progress_and_checkpoints(seg):
    log = seg['full_log']
    for i in range(1, MAX_ITERS + 1):
        assert f'Iter(train) [{i}/{MAX_ITERS}]' in log
    assert 'decode.loss_ce' in log
    assert 'mIoU' in log  # validation at the end of training
    for i in (2, 4, 6):
        assert osp.isfile(seg['full'] / f'iter_{i}.pth')
    ckpt = load_checkpoint(seg['full'] / 'iter_6.pth')
    assert ckpt['meta']['iter'] == MAX_ITERS
    assert 'optimizer' in ckpt and 'param_schedulers' in ckpt


def test_killed_run_resumes_and_loses_nothing(seg):
    work = seg['root'] / 'killed'
    proc = tool(
        'train.py',
        seg['killed_cfg'],
        '--work-dir',
        work,
        check=False,
        PYTHONPATH=seg['pythonpath'])
    assert proc.returncode != 0  # SIGKILLed after iteration 3
    assert 'Iter(train) [3/6]' in proc.stdout
    assert 'Iter(train) [4/6]' not in proc.stdout
    assert osp.isfile(work / 'iter_2.pth')
    assert not osp.exists(work / 'iter_4.pth')

    # Resume (without the kill hook) from the last checkpoint, iteration 2.
    log = tool('train.py', seg['cfg'], '--work-dir', work, '--resume').stdout
    assert 'resumed' in log.lower() and 'iter_2.pth' in log
    assert 'Iter(train) [3/6]' in log and 'Iter(train) [1/6]' not in log

    resumed = state_dict_of(work / 'iter_6.pth')
    reference = state_dict_of(seg['full'] / 'iter_6.pth')
    assert resumed.keys() == reference.keys()
    for key in reference:
        torch.testing.assert_close(
            resumed[key], reference[key], rtol=0, atol=1e-6, msg=key)
    # And the optimizer state matches too.
    ckpt_r = load_checkpoint(work / 'iter_6.pth')
    ckpt_f = load_checkpoint(seg['full'] / 'iter_6.pth')
    assert ckpt_r['meta']['iter'] == ckpt_f['meta']['iter'] == MAX_ITERS
    steps = {
        s['step'].item() if torch.is_tensor(s['step']) else s['step']
        for s in ckpt_r['optimizer']['state'].values()
    }
    assert steps == {float(MAX_ITERS)} or steps == {MAX_ITERS}


def test_test_tool_metrics_masks_and_pictures(seg):
    out_dir = seg['root'] / 'masks'
    vis_dir = seg['root'] / 'vis'
    metrics_file = seg['root'] / 'metrics.json'
    log = tool('test.py', seg['cfg'], seg['full'] / 'iter_6.pth', '--work-dir',
               seg['root'] / 'test', '--out', out_dir, '--show-dir', vis_dir,
               '--metrics-file', metrics_file).stdout
    metrics = json.loads(metrics_file.read_text())
    assert 0 <= metrics['mIoU'] <= 100 and 0 <= metrics['aAcc'] <= 100
    assert 'METRICS' in log
    masks = files(str(out_dir / '*.png'))
    assert len(masks) == 4
    pred = np.array(Image.open(masks[0]))
    assert pred.shape == (128, 128)
    # Written in the dataset's own label space (reduce_zero_label undone):
    # 1..4 for the 4 classes.
    assert 1 <= pred.min() and pred.max() <= 4
    pictures = files(str(vis_dir / '**' / '*.png'))
    assert len(pictures) == 4

    # --out FILE.pkl dumps the raw predictions instead.
    pkl = seg['root'] / 'preds.pkl'
    tool('test.py', seg['cfg'], seg['full'] / 'iter_6.pth', '--work-dir',
         seg['root'] / 'test2', '--out', pkl)
    with open(pkl, 'rb') as f:
        preds = pickle.load(f)
    assert len(preds) == 4 and 'pred_sem_seg' in preds[0]


def test_mmseg_own_test_tool_runs_our_config(seg):
    import mmseg
    mmseg_test = osp.join(
        osp.dirname(mmseg.__file__), '.mim', 'tools', 'test.py')
    if not osp.isfile(mmseg_test):
        pytest.skip('this mmseg install ships no tools/test.py')
    import sys

    from _detseg_utils import run
    log = run([
        sys.executable, mmseg_test, seg['cfg'],
        str(seg['full'] / 'iter_6.pth'), '--work-dir',
        str(seg['root'] / 'mmseg_test')
    ]).stdout
    assert 'mIoU' in log


def test_readme_python_examples_segmentation(seg):
    """The README's "Use it from Python" segmentation snippet on this run's
    checkpoint: MMSegInferencer."""
    import glob

    import mmcv
    from mmseg.apis import MMSegInferencer
    image = sorted(
        glob.glob(osp.join(seg['ade'], 'images', 'validation', '*.jpg')))[0]
    out_dir = seg['root'] / 'demo_seg'
    inferencer = MMSegInferencer(
        seg['cfg'], weights=str(seg['full'] / 'iter_6.pth'), device='cpu')
    result = inferencer(image, out_dir=str(out_dir))
    assert result['predictions'].shape == mmcv.imread(image).shape[:2]
    assert glob.glob(str(out_dir / 'vis' / '*'))
    assert glob.glob(str(out_dir / 'pred' / '*'))


def test_readme_tensorboard_backend(seg):
    """The README's TensorBoard snippet: a config that inherits ours and adds
    the backend writes an event file."""
    import glob

    from _detseg_utils import tool, write_config
    pytest.importorskip('tensorboard', reason='pip install tensorboard')
    cfg = write_config(
        seg['root'] / 'seg_tb.py', seg['cfg'], '''
visualizer = dict(vis_backends=[dict(type='LocalVisBackend'),
                                dict(type='TensorboardVisBackend')])
train_cfg = dict(max_iters=2, val_interval=2)
''')
    work = seg['root'] / 'tb'
    tool('train.py', cfg, '--work-dir', work)
    assert glob.glob(str(work / '*' / 'vis_data' / 'events.out.tfevents.*'))
