"""Convert a released EfficientMod checkpoint into an mmefficientmod one.

    python tools/model_converters/efficientmod_to_mm.py SRC DST [--ema] [--force]

SRC: a released ImageNet classifier or COCO / ADE20K model; DST loads into
the matching config with no missing or unexpected keys (docs/checkpoints.md).
"""
import argparse
import io
import os
import os.path as osp
import sys

import torch

from mmefficientmod.checkpoint import (NotEfficientModCheckpoint,
                                       UnreadableCheckpointError,
                                       UnsafeCheckpointError, read_checkpoint)
from mmefficientmod.engine.safety_hooks import SafeLocalBackend


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    add = parser.add_argument
    add('src', help='released EfficientMod checkpoint')
    add('dst', help='where to write the converted checkpoint')
    add('--ema',
        action='store_true',
        help="take the EMA weights ('state_dict_ema') of an ImageNet "
        'checkpoint')
    add('--force', action='store_true', help='overwrite DST if it exists')
    return parser.parse_args()


def path_problem(src: str, dst: str, force: bool):
    """What is wrong with the two paths, or None."""
    if not osp.lexists(src):
        return f'{src} does not exist.'
    try:
        os.stat(src)
    except OSError as error:  # a symlink loop, or one to nothing
        return f'{src} cannot be read: {error.strerror}.'
    if osp.isdir(src):
        return f'{src} is a directory: give the checkpoint file.'
    if osp.isdir(dst):
        return f'{dst} is a directory: give the file to write, e.g. ' \
               f'{osp.join(dst, osp.basename(src))}.'
    parent = osp.dirname(osp.abspath(dst))
    if osp.exists(parent) and not osp.isdir(parent):
        return f'{parent} is a file, so {dst} cannot be written in it.'
    if osp.exists(dst) and osp.samefile(src, dst):
        return f'{dst} is SRC itself: write the conversion to another file.'
    if osp.exists(dst) and not force:
        return f'{dst} exists; pass --force to overwrite it.'
    return None


def main():
    args = parse_args()
    problem = path_problem(args.src, args.dst, args.force)
    if problem:
        sys.exit(f'error: {problem}')
    try:
        converted = read_checkpoint(args.src, use_ema=args.ema)
    except (UnsafeCheckpointError, UnreadableCheckpointError,
            NotEfficientModCheckpoint) as error:
        sys.exit(f'error: {error}')
    meta = converted['meta']
    if 'converted_from' not in meta:
        sys.exit(f'error: {args.src} is already in this project\'s layout: '
                 'use it as it is.')
    for key, value in converted['state_dict'].items():
        if not torch.isfinite(value).all():
            sys.exit(f'error: {args.src} holds non-finite values in {key} '
                     '(a diverged training): it would give NaN outputs.')
    buffer = io.BytesIO()
    torch.save(converted, buffer)
    SafeLocalBackend().put(buffer.getvalue(), args.dst)  # whole or nothing
    print(f'{args.src} -> {args.dst}: EfficientMod-{meta["arch"]} '
          f'{meta["task"]} checkpoint, {len(converted["state_dict"])} tensors'
          f'{", EMA weights" if meta["ema"] else ""}.')


if __name__ == '__main__':
    main()
