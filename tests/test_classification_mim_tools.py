"""mmpretrain's own tools/train.py and tools/test.py (shipped in the
mmpretrain package under ``.mim/tools``) run this project's configs."""
import os.path as osp
import re
import sys

import mmpretrain
import pytest
import torch
from _detseg_utils import REPO, run

from mmefficientmod.checkpoint.safe_load import load_checkpoint

CONFIGS = osp.join(REPO, 'configs', 'efficientmod')
MIM_TOOLS = osp.join(osp.dirname(mmpretrain.__file__), '.mim', 'tools')
KEY_WARNING = re.compile(r'missing key|unexpected key|size mismatch',
                         re.IGNORECASE)

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        not osp.isfile(osp.join(MIM_TOOLS, 'train.py')),
        reason='this mmpretrain installation ships no '
        '.mim/tools'),
]


def run_mim(tool, args):
    """Run mmpretrain's ``tools/<tool>``; its output."""
    return run([sys.executable, osp.join(MIM_TOOLS, tool), *args]).stdout


def test_mmpretrain_tools_train_and_test_the_distill_recipe(
        tmp_path, embedded_imagenet):
    """The full-size xxs distillation config (224 px, ConvNeXt-S teacher,
    Mixup/CutMix, EMA) trains one short epoch on the embedded ImageNet with
    mmpretrain's tools/train.py and is evaluated with its tools/test.py;
    only sizes, the data root and the teacher checkpoint (no network here)
    are overridden (and, with no worker processes, persistent workers)."""
    data = []
    for split in ('train', 'val', 'test'):
        data += [
            f'{split}_dataloader.dataset.data_root={embedded_imagenet}',
            f'{split}_dataloader.num_workers=0',
            f'{split}_dataloader.batch_size=8'
        ]
    config = osp.join(CONFIGS, 'efficientmod-xxs_distill_8xb256_in1k.py')
    work_dir = str(tmp_path / 'work')
    out = run_mim('train.py', [
        config, '--work-dir', work_dir, '--no-persistent-workers',
        '--cfg-options', 'model.teacher.checkpoint=None',
        'train_cfg.max_epochs=1', 'default_hooks.logger.interval=1'
    ] + data)
    assert re.search(r'Epoch\(train\) +\[1\]\[2/2\].*loss_distill', out), \
        out[-3000:]
    assert 'accuracy/top1' in out and 'accuracy/top5' in out
    ckpt_path = osp.join(work_dir, 'epoch_1.pth')
    ckpt = load_checkpoint(ckpt_path)
    assert 'ema_state_dict' in ckpt
    assert not any('teacher' in k for k in ckpt['state_dict'])

    # mmpretrain's tools/test.py evaluates it with the distill config (the
    # teacher is built but its checkpoint is never loaded for testing)
    out = run_mim('test.py', [
        config, ckpt_path, '--work-dir',
        str(tmp_path / 'test'), '--cfg-options'
    ] + data)
    assert re.search(r'accuracy/top1: [\d.]+ +accuracy/top5: [\d.]+', out), \
        out[-3000:]
    assert not KEY_WARNING.search(out), out[-3000:]


def run_failing(tool_path, args):
    proc = run([sys.executable, tool_path, *args], check=False)
    assert proc.returncode != 0, proc.stdout[-3000:]
    return proc.stdout


def test_checkpoint_payload_refused_by_test_and_resume(tmp_path,
                                                       embedded_imagenet):
    """A checkpoint whose pickle runs code is refused, without running it,
    by mmpretrain's tools/test.py, ours, and our tools/train.py --resume."""
    from test_safe_checkpoints import Payload
    root = embedded_imagenet
    data = []
    for split in ('train', 'val', 'test'):
        data += [
            f'{split}_dataloader.dataset.data_root={root}',
            f'{split}_dataloader.num_workers=0'
        ]
    config = osp.join(CONFIGS,
                      'efficientmod-xxs_distill_1xb8_embedded-64px.py')
    marker = tmp_path / 'payload_ran'
    evil = tmp_path / 'evil.pth'
    torch.save({'state_dict': {}, 'meta': Payload(marker)}, evil)
    runs = {
        'mmpretrain test.py': (osp.join(MIM_TOOLS,
                                        'test.py'), [config, str(evil)]),
        'tools/test.py': (osp.join(REPO, 'tools',
                                   'test.py'), [config, str(evil)]),
        'tools/train.py --resume':
        (osp.join(REPO, 'tools', 'train.py'), [config, '--resume',
                                               str(evil)]),
    }
    for name, (tool, args) in runs.items():
        out = run_failing(
            tool,
            args + ['--work-dir',
                    str(tmp_path / 'work'), '--cfg-options'] + data)
        assert 'UnsafeCheckpointError' in out, (name, out[-3000:])
        assert 'builtins.exec' in out and str(evil) in out, name
        assert not marker.exists(), f'the payload ran through {name}'


def test_readme_analysis_tools(tmp_path, embedded_imagenet):
    """The README's mmpretrain analysis tools through ``mim run`` on a
    classifier trained with our embedded config: analyze_logs plot_curve on
    its scalars.json and confusion_matrix on its validation set."""
    import glob

    from _detseg_utils import tool
    config = osp.join(CONFIGS, 'efficientmod-xxs_1xb32_embedded-64px.py')
    roots = [
        f'{s}_dataloader.dataset.data_root={embedded_imagenet}'
        for s in ('train', 'val', 'test')
    ]
    work = tmp_path / 'work'
    tool('train.py', config, '--work-dir', work, '--cfg-options',
         'train_cfg.max_epochs=2', 'default_hooks.logger.interval=1', *roots)
    mim = osp.join(osp.dirname(sys.executable), 'mim')
    (scalars, ) = glob.glob(str(work / '*' / 'vis_data' / 'scalars.json'))
    curve = tmp_path / 'loss.png'
    run([
        mim, 'run', 'mmpretrain', 'analyze_logs', 'plot_curve', scalars,
        '--keys', 'loss', '--out',
        str(curve)
    ])
    assert curve.stat().st_size > 0
    matrix = tmp_path / 'confusion.png'
    out = run([
        mim, 'run', 'mmpretrain', 'confusion_matrix', config,
        str(work / 'epoch_2.pth'), '--show-path',
        str(matrix), '--cfg-options', roots[-1]
    ]).stdout
    assert matrix.stat().st_size > 0, out[-3000:]
