"""SafeCheckpointHook (checkpoints survive a kill and a full disk, one live
run per work dir) and NonFiniteCheckHook (a diverging run stops, non-finite
weights are neither saved nor tested)."""
import errno
import os
import os.path as osp
import subprocess
import sys
import textwrap
import types

import pytest
import torch
from _detseg_utils import REPO, TinyClassifier, ToyData, state_dict_of
from mmengine.runner import Runner

from mmefficientmod.engine import safety_hooks
from mmefficientmod.engine.safety_hooks import (DiskFullError,
                                                NonFiniteCheckHook,
                                                SafeCheckpointHook,
                                                lock_work_dir)

TESTS = osp.join(REPO, 'tests')
CLASSIFIER = osp.join(REPO, 'configs', 'efficientmod',
                      'efficientmod-xxs_1xb32_embedded-64px.py')


def data_roots(root):
    return [
        f'{split}_dataloader.dataset.data_root={root}'
        for split in ('train', 'val', 'test')
    ]


class NaNFrom(ToyData):
    """ToyData whose images from ``start`` on are nan."""

    def __init__(self, start):
        self.start = start

    def __getitem__(self, index):
        item = super().__getitem__(index)
        if index >= self.start:
            item['inputs'] = torch.full_like(item['inputs'], float('nan'))
        return item


def toy_runner(work_dir, max_iters=3, dataset=None, resume=False, **hook):
    """TinyClassifier trained for ``max_iters`` iterations (batch 2, no
    shuffle) with SafeCheckpointHook saving every iteration."""
    return Runner(
        model=TinyClassifier(),
        work_dir=str(work_dir),
        train_dataloader=dict(
            dataset=dataset or ToyData(),
            batch_size=2,
            num_workers=0,
            sampler=dict(type='DefaultSampler', shuffle=False),
            collate_fn=dict(type='default_collate')),
        optim_wrapper=dict(optimizer=dict(type='AdamW', lr=1e-3)),
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        default_hooks=dict(
            checkpoint=dict(
                type='SafeCheckpointHook', interval=1, by_epoch=False, **
                hook)),
        resume=resume,
        randomness=dict(seed=0))


def run_python(code, **kwargs):
    return subprocess.run(
        [sys.executable, '-c', textwrap.dedent(code)],
        cwd=REPO,
        env=dict(os.environ, PYTHONWARNINGS='ignore'),
        text=True,
        **kwargs)


def test_kill_between_write_and_rename_keeps_the_last_checkpoint(tmp_path):
    # SIGKILL at the second save, after the new file is written and before
    # it is renamed: the stock hook would already have deleted iter_1.pth.
    proc = run_python(
        f'''
        import os, signal, sys
        sys.path.insert(0, {TESTS!r})
        import mmefficientmod
        from test_safety_hooks import toy_runner
        saves, replace = [], os.replace
        def kill_at_second(src, dst):
            saves.append(dst)
            if len(saves) == 2:
                os.kill(os.getpid(), signal.SIGKILL)
            replace(src, dst)
        os.replace = kill_at_second
        toy_runner({str(tmp_path)!r}, max_keep_ckpts=1).train()
        ''',
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        timeout=300)
    assert proc.returncode == -9, proc.stdout[-3000:]
    names = sorted(n for n in os.listdir(tmp_path) if '.pth' in n)
    assert names == ['iter_1.pth', 'iter_2.pth.tmp']
    assert set(state_dict_of(str(tmp_path / 'iter_1.pth'))) == set(
        TinyClassifier().state_dict())
    with open(tmp_path / 'last_checkpoint') as f:
        assert f.read() == str(tmp_path / 'iter_1.pth')

    # The lock died with the process: resuming works, and retires
    # iter_1.pth only once iter_3.pth is in place.
    toy_runner(tmp_path, resume=True, max_keep_ckpts=1).train()
    names = sorted(n for n in os.listdir(tmp_path) if '.pth' in n)
    assert names == ['iter_3.pth']


@pytest.mark.parametrize('fault', ['measured', 'write'])
def test_full_disk_is_a_clear_error_and_keeps_the_last_checkpoint(
        tmp_path, monkeypatch, fault):
    puts = []
    put = safety_hooks.SafeLocalBackend.put

    def put_then_fill_the_disk(self, obj, filepath):
        puts.append(filepath)
        if len(puts) == 2 and fault == 'measured':
            monkeypatch.setattr(safety_hooks.shutil, 'disk_usage',
                                lambda _: types.SimpleNamespace(free=1000))
        if len(puts) == 2 and fault == 'write':

            def no_space(fd):
                raise OSError(errno.ENOSPC, 'No space left on device')

            monkeypatch.setattr(safety_hooks.os, 'fsync', no_space)
        return put(self, obj, filepath)

    monkeypatch.setattr(safety_hooks.SafeLocalBackend, 'put',
                        put_then_fill_the_disk)
    runner = toy_runner(tmp_path, max_keep_ckpts=1)
    with pytest.raises(DiskFullError) as error:
        runner.train()
    monkeypatch.undo()
    message = str(error.value)
    assert f'in {tmp_path}' in message and 'MiB needed' in message
    assert f'{tmp_path / "iter_1.pth"}, was kept' in message
    names = sorted(n for n in os.listdir(tmp_path) if '.pth' in n)
    assert names == ['iter_1.pth']
    assert state_dict_of(str(tmp_path / 'iter_1.pth'))


def test_second_live_run_in_the_work_dir_is_refused(tmp_path, load_tool,
                                                    embedded_imagenet):
    holder = subprocess.Popen([
        sys.executable, '-c', 'import time\n'
        'from mmefficientmod.engine.safety_hooks import lock_work_dir\n'
        f'lock = lock_work_dir({str(tmp_path)!r})\n'
        'print("locked", flush=True)\n'
        'time.sleep(600)\n'
    ],
                              cwd=REPO,
                              stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == 'locked'
        # tools/train.py: refused before the runner writes anything there
        with pytest.raises(RuntimeError, match=f'pid {holder.pid}'):
            load_tool('train').main([
                CLASSIFIER, '--work-dir',
                str(tmp_path), '--cfg-options', *data_roots(embedded_imagenet)
            ])
        assert os.listdir(tmp_path) == ['.training.lock']
        # any runner with the hook
        with pytest.raises(RuntimeError) as error:
            toy_runner(tmp_path).train()
        message = str(error.value)
        assert str(tmp_path) in message and f'pid {holder.pid}' in message
        assert '--work-dir' in message
        assert not any('.pth' in n for n in os.listdir(tmp_path))
    finally:
        holder.kill()
        holder.wait()
    lock_work_dir(str(tmp_path)).close()  # free once its holder is gone


def test_diverging_run_stops_before_saving_non_finite_weights(tmp_path):
    # Images 6 and 7 are nan: iteration 4 has a nan loss.
    runner = toy_runner(tmp_path, max_iters=4, dataset=NaNFrom(6))
    runner.register_hook(NonFiniteCheckHook())
    with pytest.raises(FloatingPointError, match='iteration 4 .*lower lea'):
        runner.train()
    names = sorted(n for n in os.listdir(tmp_path) if n.endswith('.pth'))
    assert names == ['iter_1.pth', 'iter_2.pth', 'iter_3.pth']
    for name in names:
        state = state_dict_of(str(tmp_path / name))
        assert all(torch.isfinite(v).all() for v in state.values()), name

    # Opted out, the same run saves nan weights.
    runner = toy_runner(tmp_path / 'off', max_iters=4, dataset=NaNFrom(6))
    runner.register_hook(NonFiniteCheckHook(check_train=False))
    runner.train()
    state = state_dict_of(str(tmp_path / 'off' / 'iter_4.pth'))
    assert not all(torch.isfinite(v).all() for v in state.values())


def test_non_finite_weights_are_neither_saved_nor_evaluated():
    model = TinyClassifier()
    with torch.no_grad():
        model.head.bias[1] = float('inf')
    runner = types.SimpleNamespace(
        model=model, iter=6, cfg=dict(load_from='epoch_3.pth'))
    hook = NonFiniteCheckHook()
    with pytest.raises(
            FloatingPointError, match=r'head\.bias \(1 of 2 .* epoch_3\.pth'):
        hook.before_test_epoch(runner)
    with pytest.raises(FloatingPointError, match=r'iteration 7.*head\.bias'):
        hook.before_save_checkpoint(runner,
                                    dict(state_dict=model.state_dict()))
    NonFiniteCheckHook(check_eval=False).before_val_epoch(runner)
    model.head.bias.data.zero_()
    hook.before_test_epoch(runner)
    hook.before_save_checkpoint(runner, dict(state_dict=model.state_dict()))


def test_test_tool_refuses_non_finite_weights(embedded_imagenet, tmp_path,
                                              load_tool):
    from mmengine.config import Config
    from mmengine.registry import MODELS, init_default_scope
    cfg = Config.fromfile(CLASSIFIER)
    init_default_scope('mmpretrain')
    state = MODELS.build(cfg.model).state_dict()
    state['head.fc.bias'][2] = float('nan')
    checkpoint = str(tmp_path / 'nan.pth')
    torch.save({'state_dict': state, 'meta': {}}, checkpoint)
    with pytest.raises(
            FloatingPointError, match=r'head\.fc\.bias \(1 of 4 .*/nan\.pth'):
        load_tool('test').main([
            CLASSIFIER, checkpoint, '--work-dir',
            str(tmp_path), '--cfg-options', *data_roots(embedded_imagenet)
        ])


def test_gradient_norm_is_checked_except_under_amp():
    from mmengine.logging import MessageHub
    from mmengine.optim import AmpOptimWrapper, OptimWrapper
    hub = MessageHub.get_instance('test_gradient_norm_is_checked')
    hub.update_scalar('train/grad_norm', float('inf'))
    for wrapper in (OptimWrapper, AmpOptimWrapper):
        runner = types.SimpleNamespace(
            message_hub=hub,
            optim_wrapper=object.__new__(wrapper),
            iter=8,
            epoch=1)
        hook = NonFiniteCheckHook()
        outputs = dict(loss=torch.tensor(0.5))
        if wrapper is OptimWrapper:
            with pytest.raises(
                    FloatingPointError,
                    match='the gradient norm is inf at iteration '
                    '9 .epoch 2.*clip_grad'):
                hook.after_train_iter(runner, outputs=outputs)
        else:  # its loss scaler skips the step and lowers the scale
            hook.after_train_iter(runner, outputs=outputs)
        NonFiniteCheckHook(check_train=False).after_train_iter(
            runner, outputs=outputs)


def test_a_validation_only_run_saves_nothing_and_does_not_fail():
    """runner.val() calls the hook's after_val_epoch without a training's
    before_train (the main job validates untrained models)."""
    hook = SafeCheckpointHook(interval=1)
    hook.after_val_epoch(types.SimpleNamespace(), metrics={'accuracy': 1.0})
