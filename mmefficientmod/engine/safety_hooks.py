"""Hooks that keep a run's checkpoints whole and finite (docs/training.md)."""
import errno
import fcntl
import glob
import math
import os
import os.path as osp
import re
import shutil
from typing import Optional

import torch
from mmengine.dist import barrier, broadcast_object_list, is_main_process
from mmengine.fileio import LocalBackend, register_backend
from mmengine.hooks import CheckpointHook, Hook
from mmengine.optim import AmpOptimWrapper, BaseOptimWrapper
from mmengine.registry import HOOKS
from mmengine.runner.checkpoint import find_latest_checkpoint

from ..checkpoint import UnreadableCheckpointError
from ..checkpoint.bad_files import describe_bad_file

TRY = ('The newest checkpoint in the work dir is the last finite one. Try a '
       'lower learning rate (optim_wrapper.optimizer.lr), gradient clipping '
       '(optim_wrapper.clip_grad=dict(max_norm=1.0)) or float32 (no --amp); '
       'NonFiniteCheckHook(check_train=False) turns this check off.')


class DiskFullError(OSError):
    """A checkpoint did not fit on the disk (errno ENOSPC)."""


class SafeLocalBackend(LocalBackend):
    """Files written whole or not at all (temporary file, fsync, rename);
    ``remove`` only marks a file, the hook deletes it after the save."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.pending = []

    def remove(self, filepath) -> None:
        self.pending.append(str(filepath))

    def put(self, obj: bytes, filepath) -> None:
        folder = osp.dirname(osp.abspath(filepath))
        os.makedirs(folder, exist_ok=True)
        tmp, free = f'{filepath}.tmp', shutil.disk_usage(folder).free
        try:
            if free < len(obj):
                raise OSError(errno.ENOSPC, 'measured before writing')
            with open(tmp, 'wb') as f:
                f.write(obj)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, filepath)
        except BaseException as error:
            if osp.exists(tmp):
                os.remove(tmp)
            if getattr(error, 'errno', None) == errno.ENOSPC:
                raise DiskFullError(
                    errno.ENOSPC, f'{len(obj) / 2**20:.1f} MiB needed, '
                    f'{free / 2**20:.1f} MiB free in {folder}') from error
            raise
        folder_fd = os.open(folder, os.O_RDONLY)
        os.fsync(folder_fd)  # the rename
        os.close(folder_fd)


register_backend('safe_local', SafeLocalBackend, force=True)


def lock_work_dir(work_dir: str):
    """Lock ``work_dir`` until the process ends (or the returned file is
    closed); RuntimeError naming the holder when a live process has it."""
    os.makedirs(work_dir, exist_ok=True)
    lock = open(osp.join(work_dir, '.training.lock'), 'a+')
    try:
        fcntl.lockf(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        lock.seek(0)
        holder = lock.read().strip() or 'unknown'
        lock.close()
        raise RuntimeError(
            f'The work dir {work_dir} is in use by a live training run (pid '
            f'{holder}); a second run would mix its checkpoints and logs '
            'with it. Pass another --work-dir, or stop that run first.')
    lock.truncate(0)
    lock.write(f'{os.getpid()}\n')
    lock.flush()
    return lock


def is_training_run(runner) -> bool:
    # The runner builds the optimizer wrapper for training runs only.
    return isinstance(runner.optim_wrapper, BaseOptimWrapper)


def _step(path: str) -> int:
    numbers = re.findall(r'\d+', osp.basename(path))
    return int(numbers[-1]) if numbers else -1


def newest_complete_checkpoint(folder: str) -> Optional[str]:
    """The newest readable ``*.pth`` of ``folder`` (by step, then time)."""
    paths = sorted(
        glob.glob(osp.join(folder, '*.pth')),
        key=lambda p: (_step(p), osp.getmtime(p)),
        reverse=True)
    return next((p for p in paths if describe_bad_file(p) is None), None)


def _unusable(path: str) -> Optional[str]:
    """Why ``path`` cannot be resumed from, or None when it can."""
    return describe_bad_file(path) if osp.isfile(path) else 'missing'


def _point_last_checkpoint(runner) -> None:
    latest = find_latest_checkpoint(runner.work_dir)  # its last_checkpoint
    found = _unusable(latest) if latest else None
    if latest and found is None:
        return  # the record names a complete checkpoint
    newest = newest_complete_checkpoint(runner.work_dir)
    if newest is None:
        return
    why = f'{latest} is {found}' if latest else \
        'the work dir has no last_checkpoint record'
    runner.logger.warning(f'Resume: {why}; resuming from {newest}, the '
                          'newest complete checkpoint.')
    if is_main_process():
        with open(osp.join(runner.work_dir, 'last_checkpoint'), 'w') as f:
            f.write(newest)


def check_resume(runner) -> None:
    """Before a training run: resume from the newest complete checkpoint,
    and never start over on top of an earlier run's checkpoints."""
    cfg, work_dir = runner.cfg, runner.work_dir
    if 'resume' not in cfg:
        return  # a Runner built in code: its config does not say
    load_from = cfg.get('load_from')
    if cfg.get('resume') and load_from is None:
        _point_last_checkpoint(runner)
        barrier()  # every rank reads last_checkpoint after it is right
    elif cfg.get('resume') and '://' not in load_from:
        found = _unusable(load_from)
        if found is not None:
            other = newest_complete_checkpoint(osp.dirname(load_from) or '.')
            hint = f'pass --resume {other} instead' if other else \
                'no complete checkpoint is beside it'
            raise UnreadableCheckpointError(
                f'Cannot resume from {load_from}: it is {found}; {hint}.')
    elif not cfg.get('start_over', False) and glob.glob(
            osp.join(work_dir, '*.pth')):
        raise FileExistsError(
            f'The work dir {work_dir} holds checkpoints of an earlier run, '
            'which this training would overwrite. Continue it with '
            '--resume, train into another --work-dir, or start over on '
            'purpose with --cfg-options start_over=True.')


@HOOKS.register_module()
class SafeCheckpointHook(CheckpointHook):
    """``CheckpointHook`` whose checkpoints survive any kill or a full disk:
    each is written to a temporary file, fsynced and renamed, and only then
    are the files ``max_keep_ckpts`` retires deleted; a full disk is a
    :class:`DiskFullError` naming the folder, the space and what was kept.
    Training also goes through :func:`check_resume` and locks the work dir
    (rank 0, until the process ends) unless ``lock_work_dir=False``. A
    remote ``out_dir`` or own ``backend_args``: mmengine's saving."""

    def __init__(self, *args, lock_work_dir: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        self.lock_work_dir, self._lock = lock_work_dir, None

    def before_run(self, runner) -> None:
        if not is_training_run(runner):
            return
        check_resume(runner)
        if not self.lock_work_dir:
            return
        error = [None]
        if is_main_process() and self._lock is None:
            try:
                self._lock = lock_work_dir(runner.work_dir)
            except RuntimeError as err:
                error = [str(err)]
        broadcast_object_list(error)  # every rank stops
        if error[0]:
            raise RuntimeError(error[0])

    def after_run(self, runner) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def before_train(self, runner) -> None:
        if (self.backend_args is None and self.file_client_args is None
                and '://' not in str(self.out_dir or runner.work_dir)):
            self.backend_args = dict(backend='safe_local')
        super().before_train(runner)
        if isinstance(self.file_backend, SafeLocalBackend):
            self._commit()
            if self._lock is not None:  # left by a killed run
                for tmp in glob.glob(osp.join(self.out_dir, '*.pth.tmp')):
                    os.remove(tmp)

    def _commit(self) -> None:
        keep = {self.last_ckpt, getattr(self, 'best_ckpt_path', None)}
        keep.update(getattr(self, 'best_ckpt_path_dict', {}).values())
        for path in self.file_backend.pending:
            if path not in keep and osp.isfile(path):
                os.remove(path)
        self.file_backend.pending.clear()

    def _safely(self, save, runner, *args) -> None:
        backend = getattr(self, 'file_backend', None)  # None: not training
        if not isinstance(backend, SafeLocalBackend):
            return save(runner, *args)
        kept = self.last_ckpt
        try:
            save(runner, *args)
        except BaseException as error:
            self.file_backend.pending.clear()
            if isinstance(error, DiskFullError) and error.filename is None:
                raise DiskFullError(
                    errno.ENOSPC, 'Not enough disk space to save a checkpoint '
                    f'({error.strerror}). No partial file was left; the '
                    f'newest complete checkpoint, {kept or "none yet"}, was '
                    'kept. Free space (or pass another --work-dir), then '
                    'train with --resume', self.out_dir) from error
            raise
        self._commit()

    def _save_checkpoint_with_step(self, runner, step, meta) -> None:
        self._safely(super()._save_checkpoint_with_step, runner, step, meta)

    def _save_best_checkpoint(self, runner, metrics) -> None:
        self._safely(super()._save_best_checkpoint, runner, metrics)


def first_non_finite(named_tensors) -> str:
    """The first floating tensor holding nan or inf, described, or ''."""
    for name, value in named_tensors:
        if (isinstance(value, torch.Tensor) and value.is_floating_point()
                and not torch.isfinite(value).all()):
            bad = int((~torch.isfinite(value)).sum())
            return f'{name} ({bad} of {value.numel()} values are nan or inf)'
    return ''


@HOOKS.register_module()
class NonFiniteCheckHook(Hook):
    """Stop a diverging run; never save or evaluate non-finite weights:
    ``FloatingPointError`` at a non-finite loss or gradient norm (not under
    ``AmpOptimWrapper``, whose scaler skips such steps) or checkpoint, unless
    ``check_train=False``, and before evaluating non-finite weights, unless
    ``check_eval=False``."""

    def __init__(self, check_train: bool = True, check_eval: bool = True):
        self.check_train, self.check_eval = check_train, check_eval

    def after_train_iter(self, runner, outputs=None, **kwargs) -> None:
        if not self.check_train:
            return
        values = [(k, v) for k, v in (outputs or {}).items() if 'loss' in k]
        grad_norm = runner.message_hub.log_scalars.get('train/grad_norm')
        if grad_norm is not None and not isinstance(runner.optim_wrapper,
                                                    AmpOptimWrapper):
            values.append(('the gradient norm', grad_norm.current()))
        for name, value in values:
            value = float(getattr(value, 'detach', lambda: value)())
            if not math.isfinite(value):
                raise FloatingPointError(
                    f'Training diverged: {name} is {value} at iteration '
                    f'{runner.iter + 1} (epoch {runner.epoch + 1}). {TRY}')

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        bad = self.check_train and first_non_finite(
            (f'{key}: {name}', value)
            for key in ('state_dict', 'ema_state_dict')
            for name, value in (checkpoint.get(key) or {}).items())
        if bad:
            raise FloatingPointError(
                f'Not saving a checkpoint at iteration {runner.iter + 1}: its '
                f'weights are not finite: {bad}. {TRY}')

    def before_val_epoch(self, runner) -> None:
        bad = self.check_eval and first_non_finite(
            [*runner.model.named_parameters(), *runner.model.named_buffers()])
        if bad:
            source = runner.cfg.get('load_from')
            raise FloatingPointError(
                f'The model to evaluate has non-finite weights: {bad}' +
                (f', loaded from {source}' if source else '') +
                '; its metrics would mean nothing. Evaluate an earlier '
                '(finite) checkpoint; NonFiniteCheckHook(check_eval=False) '
                'turns this check off.')

    before_test_epoch = before_val_epoch
