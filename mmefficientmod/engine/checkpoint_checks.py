"""What :class:`EfficientModConfigCheckHook` does about checkpoints.

* Resuming (``resume=True``): a latest checkpoint that is unreadable (cut
  short while it was written, say) is replaced by the newest complete one
  of the work dir, with one line saying so; a named one that is unreadable
  stops the run, naming the complete checkpoint to pass instead.
* Training from ``load_from``: mmengine's behaviour (the weights that fit
  are loaded), with one warning line saying what the file holds, how many
  tensors do not fit and the fix. Testing and validating: the model's own
  check (:mod:`mmefficientmod.checkpoint.strict_loading`) refuses such
  weights.
"""
import glob
import os.path as osp
import re
from collections import OrderedDict
from typing import List, Optional

from mmengine.model import is_model_wrapper
from mmengine.runner import BaseLoop
from mmengine.runner.checkpoint import find_latest_checkpoint

from ..checkpoint.bad_files import UnreadableCheckpointError, describe_bad_file
from ..checkpoint.strict_loading import (SOURCE_KEY, compare, report,
                                         set_training_load)


def _unreadable_reason(path: str) -> Optional[str]:
    """Why ``path`` cannot be resumed from, or None when it can."""
    if not osp.isfile(path):
        return 'it does not exist'
    found = describe_bad_file(path)
    return f'it is {found}' if found else None


def _step(path: str) -> int:
    numbers = re.findall(r'\d+', osp.basename(path))
    return int(numbers[-1]) if numbers else -1


def complete_checkpoints(work_dir: str) -> List[str]:
    """The readable ``*.pth`` files of ``work_dir``, newest first (by the
    epoch or iteration in their name, then by time)."""
    paths = glob.glob(osp.join(work_dir, '*.pth'))
    paths.sort(key=lambda p: (_step(p), osp.getmtime(p)), reverse=True)
    return [p for p in paths if _unreadable_reason(p) is None]


def choose_resume_checkpoint(runner) -> None:
    """Before a resumed run loads: fall back from an unreadable latest
    checkpoint, or stop naming the one to pass."""
    if '://' in str(runner._load_from or ''):
        return
    if runner._load_from is None:
        latest = find_latest_checkpoint(runner.work_dir)
        if latest is None or '://' in latest:
            return  # mmengine starts anew or reads a remote file
        reason = _unreadable_reason(latest)
        if reason is None:
            return
        candidates = [
            p for p in complete_checkpoints(runner.work_dir)
            if not osp.isfile(latest) or not osp.samefile(p, latest)
        ] if osp.isdir(runner.work_dir) else []
        if not candidates:
            raise UnreadableCheckpointError(
                f'Cannot resume: the latest checkpoint {latest} is unusable '
                f'({reason}) and {runner.work_dir} holds no complete '
                'checkpoint. Start anew without --resume (resume=False), or '
                'pass a checkpoint with --resume CKPT.')
        runner._load_from = candidates[0]
        runner.logger.warning(
            f'Resume: the latest checkpoint {latest} is unusable ({reason}); '
            f'resuming from {candidates[0]}, the newest complete one.')
        return
    reason = _unreadable_reason(runner._load_from)
    if reason is None:
        return
    folder = osp.dirname(osp.abspath(runner._load_from))
    candidates = complete_checkpoints(folder) + (
        complete_checkpoints(runner.work_dir)
        if osp.isdir(runner.work_dir) else [])
    hint = (f'pass the newest complete one instead: --resume {candidates[0]}'
            if candidates else
            'no complete checkpoint was found beside it or in the work dir')
    raise UnreadableCheckpointError(
        f'Cannot resume from {runner._load_from}: {reason}; {hint}.')


def _is_training(runner) -> bool:
    return bool(runner._resume) or isinstance(runner._train_loop, BaseLoop)


def after_load_checkpoint(runner, checkpoint: dict) -> None:
    """Between the runner's read of a checkpoint and its load."""
    if not _is_training(runner):
        set_training_load(False)  # the model refuses weights that misfit
        return
    set_training_load(True)
    state = checkpoint.get('state_dict', checkpoint)
    metadata = getattr(state, '_metadata', None) or {}
    source = metadata.get('', {}).get(SOURCE_KEY) or runner._load_from
    # As the runner loads it: without DistributedDataParallel's prefix.
    state = OrderedDict(
        (re.sub(r'^module\.', '', k), v) for k, v in state.items())
    model = runner.model.module if is_model_wrapper(
        runner.model) else runner.model
    expected = model.state_dict()
    fit = compare(expected, state)
    if not fit.complete:
        what, fix = report(expected, state, fit, source)
        runner.logger.warning(
            f'Training from weights that do not fit the model: {what}; '
            f'those keep their initial values. {fix}')


def before_train(runner) -> None:
    set_training_load(False)
