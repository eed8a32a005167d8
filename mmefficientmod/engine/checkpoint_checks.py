"""What :class:`EfficientModConfigCheckHook` does about checkpoints, through
the runner's public API (``cfg``, ``work_dir``, ``model``, ``optim_wrapper``).

* ``resume``: mmengine resumes from the file ``last_checkpoint`` names and
  starts over without one; a missing record, or one naming a file cut short,
  is pointed at the newest complete checkpoint. An unreadable
  ``--resume CKPT`` stops the run, naming one to pass.
* A training that is not resumed refuses a work dir holding checkpoints
  (it would overwrite them) unless the config says ``start_over=True``.
* Test and validation runs refuse weights that leave the model's tensors
  missing or of other shapes; training from ``load_from`` logs one line
  naming what keeps its initial values.
"""
import glob
import os.path as osp
import re
from typing import List

from mmengine.dist import barrier, is_main_process
from mmengine.model import is_model_wrapper
from mmengine.optim import BaseOptimWrapper

from ..checkpoint import (CheckpointMismatchError, UnreadableCheckpointError,
                          check_fit, strip_prefix)
from ..checkpoint.bad_files import describe_bad_file


def _step(path: str) -> int:
    numbers = re.findall(r'\d+', osp.basename(path))
    return int(numbers[-1]) if numbers else -1


def complete_checkpoints(folder: str) -> List[str]:
    """The readable ``*.pth`` files of ``folder``, newest first (by the epoch
    or iteration in their name, then by time)."""
    paths = sorted(
        glob.glob(osp.join(folder, '*.pth')),
        key=lambda p: (_step(p), osp.getmtime(p)),
        reverse=True)
    return [p for p in paths if describe_bad_file(p) is None]


def _is_training(runner) -> bool:
    # The runner builds the optimizer wrapper for training runs only.
    return isinstance(runner.optim_wrapper, BaseOptimWrapper)


def _point_last_checkpoint(runner) -> None:
    record = osp.join(runner.work_dir, 'last_checkpoint')
    latest = open(record).read().strip() if osp.isfile(record) else None
    if latest and osp.isfile(latest) and describe_bad_file(latest) is None:
        return
    candidates = complete_checkpoints(runner.work_dir)
    if not candidates:
        return
    why = (f'{latest} is {describe_bad_file(latest)}'
           if latest and osp.isfile(latest) else f'{latest} is missing'
           if latest else 'the work dir has no last_checkpoint record')
    runner.logger.warning(f'Resume: {why}; resuming from {candidates[0]}, '
                          'the newest complete checkpoint.')
    if is_main_process():
        with open(record, 'w') as f:
            f.write(candidates[0])


def before_run(runner) -> None:
    cfg, work_dir = runner.cfg, runner.work_dir
    load_from = cfg.get('load_from')
    if cfg.get('resume') and load_from is None:
        _point_last_checkpoint(runner)
        barrier()  # every rank reads last_checkpoint after it is right
    elif cfg.get('resume') and '://' not in load_from:
        found = describe_bad_file(load_from) if osp.isfile(load_from) \
            else 'missing'
        if found is not None:
            others = complete_checkpoints(osp.dirname(load_from) or '.')
            hint = f'pass --resume {others[0]} instead' if others else \
                'no complete checkpoint is beside it'
            raise UnreadableCheckpointError(
                f'Cannot resume from {load_from}: it is {found}; {hint}.')
    elif (_is_training(runner) and not cfg.get('start_over', False)
          and glob.glob(osp.join(work_dir, '*.pth'))):
        raise FileExistsError(
            f'The work dir {work_dir} holds checkpoints of an earlier run, '
            'which this training would overwrite. Continue it with '
            '--resume, train into another --work-dir, or start over on '
            'purpose with --cfg-options start_over=True.')


def after_load_checkpoint(runner, checkpoint: dict, strict: bool) -> None:
    state = checkpoint.get('state_dict', checkpoint)
    state = strip_prefix(state)  # as the runner loads it, without 'module.'
    model = runner.model.module if is_model_wrapper(
        runner.model) else runner.model
    source = f"the checkpoint {runner.cfg.get('load_from') or ''}".strip()
    if strict and not _is_training(runner):
        try:
            check_fit(model.state_dict(), state, source)
        except CheckpointMismatchError as mismatch:
            raise CheckpointMismatchError(
                f'{mismatch} To test the part that fits on purpose: '
                'tools/test.py --allow-partial-checkpoint, or '
                "dict(type='EfficientModConfigCheckHook', "
                'strict_test_loading=False) in custom_hooks.') from None
        return
    try:
        check_fit(model.state_dict(), state, source)
    except CheckpointMismatchError as mismatch:
        runner.logger.warning(
            f'{mismatch}'.replace('Refused to load', 'Training from', 1) +
            ' What does not fit keeps its initial values.')
