"""Publish a training checkpoint as a small weights-only checkpoint.

    python tools/model_converters/publish_ema.py SRC DST [--online] [--no-hash]

Writes ``{'state_dict': <EMA weights>, 'meta': {...}}``: the weights that
were evaluated (``--online``: the raw ones), as ``DST-<sha256[:8]>.pth``.
See docs/training.md, "EMA weights".
"""
import argparse
import hashlib
import io
import os.path as osp
import pickle
import sys
from collections import OrderedDict

import torch

from mmefficientmod.checkpoint import strip_prefix
from mmefficientmod.checkpoint.bad_files import UnreadableCheckpointError
from mmefficientmod.checkpoint.safe_load import load_checkpoint
from mmefficientmod.engine.safety_hooks import SafeLocalBackend


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Write the EMA (or online) weights of a training '
        'checkpoint as a weights-only checkpoint.')
    add = parser.add_argument
    add('src', help='training checkpoint (from tools/train.py)')
    add('dst', help='output checkpoint')
    add('--online', action='store_true', help='the non-EMA weights instead')
    add('--no-hash', action='store_true', help='no SHA-256 prefix in the name')
    add('--force', action='store_true', help='replace an existing output')
    return parser.parse_args(argv)


def extract_weights(checkpoint: dict, online: bool = False):
    """Return ``(state_dict, kind)`` with kind ``'ema'``, ``'online'`` or
    ``'plain'`` (a checkpoint saved without EMA)."""
    if not isinstance(checkpoint, dict) or 'state_dict' not in checkpoint:
        found = sorted(checkpoint)[:8] if isinstance(
            checkpoint, dict) else type(checkpoint).__name__
        raise KeyError(
            f'not a training checkpoint of mmengine (no `state_dict`; found '
            f'{found}): pass a checkpoint that tools/train.py saved '
            '(work_dirs/<config>/epoch_N.pth or iter_N.pth)')
    state = OrderedDict(checkpoint['state_dict'])
    ema = checkpoint.get('ema_state_dict')
    if ema is None:
        if online:
            raise KeyError('--online needs a checkpoint saved with EMAHook '
                           '(no `ema_state_dict` here)')
        return state, 'plain'
    # EMAHook.before_save_checkpoint swapped the EMA weights into
    # `state_dict`; the online ones are in `ema_state_dict`.
    online_state = strip_prefix(ema, drop_others=True)
    if online:
        state.update(online_state)
        return state, 'online'
    missing = [k for k in online_state if k not in state]
    if missing:  # every EMA-tracked key must be there
        raise KeyError(f'state_dict lacks EMA keys, e.g. {missing[:5]}')
    return state, 'ema'


class DestinationError(ValueError):
    """The output would replace the input, or an existing file."""


def _check_destination(src: str, dst: str, force: bool) -> None:
    if osp.exists(dst) and osp.exists(src) and osp.samefile(src, dst):
        raise DestinationError(
            f'the output {dst} is the input checkpoint itself; writing it '
            'would destroy the training checkpoint. Choose another output '
            'path.')
    if osp.exists(dst) and not force:
        raise DestinationError(
            f'the output {dst} already exists; choose another path, or pass '
            '--force to replace it.')


def publish(src: str,
            dst: str,
            online: bool = False,
            add_hash: bool = True,
            force: bool = False) -> str:
    """Write the published checkpoint and return its path.

    Raises:
        DestinationError: the output is ``src``, or exists and not
            ``force``.
    """
    _check_destination(src, dst, force)
    checkpoint = load_checkpoint(src)
    state, kind = extract_weights(checkpoint, online)
    teacher_keys = [k for k in state if k.startswith('teacher.')]
    if teacher_keys:
        print(f'warning: dropping {len(teacher_keys)} teacher weights')
        for k in teacher_keys:
            del state[k]
    src_meta = checkpoint.get('meta') or {}
    meta = dict(weights=kind, source=osp.basename(src))
    for key in ('epoch', 'iter', 'mmengine_version', 'dataset_meta'):
        meta[key] = src_meta.get(key)
    buffer = io.BytesIO()
    torch.save({'state_dict': state, 'meta': meta}, buffer)
    data, final = buffer.getvalue(), dst
    if add_hash:
        root, ext = osp.splitext(dst)
        sha = hashlib.sha256(data).hexdigest()
        final = f'{root}-{sha[:8]}{ext or ".pth"}'
    _check_destination(src, final, force)
    SafeLocalBackend().put(data, final)  # written whole or not at all
    return final


def main(argv=None):
    args = parse_args(argv)
    try:
        path = publish(args.src, args.dst, args.online, not args.no_hash,
                       args.force)
    except (pickle.UnpicklingError, UnreadableCheckpointError,
            FileNotFoundError, DestinationError) as error:
        sys.exit(f'error: {error}')
    except KeyError as error:
        sys.exit(f'error: {args.src}: {error.args[0]}')
    print(path)


if __name__ == '__main__':
    main()
