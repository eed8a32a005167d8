"""Convert a released EfficientMod checkpoint into an mmefficientmod one.

    python tools/model_converters/efficientmod_to_mm.py SRC DST [--ema]

SRC may be an ImageNet classifier (``{'model': ..., 'state_dict_ema': ...}``),
or a COCO Mask R-CNN / ADE20K Semantic FPN model (``{'state_dict': ...}`` with
``backbone.`` keys). The arch is read off the weights' shapes. DST loads into
the matching config of this project (``ImageClassifier``, ``MaskRCNN`` or
``EncoderDecoder``) with no missing or unexpected keys.
"""
import argparse
import os
import os.path as osp
import sys

import torch

from mmefficientmod.checkpoint import (NotEfficientModCheckpoint,
                                       convert_checkpoint)
from mmefficientmod.checkpoint.bad_files import UnreadableCheckpointError
from mmefficientmod.checkpoint.safe_load import (UnsafeCheckpointError,
                                                 load_checkpoint)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('src', help='released EfficientMod checkpoint')
    parser.add_argument('dst', help='where to write the converted checkpoint')
    parser.add_argument(
        '--ema',
        action='store_true',
        help="take the EMA weights ('state_dict_ema') of an "
        'ImageNet checkpoint')
    parser.add_argument(
        '--force', action='store_true', help='overwrite DST if it exists')
    return parser.parse_args()


def main():
    args = parse_args()
    if not osp.isfile(args.src):
        sys.exit(f'error: {args.src} does not exist.')
    if osp.exists(args.dst) and not args.force:
        sys.exit(f'error: {args.dst} exists; pass --force to overwrite it.')
    # Only the types released checkpoints hold are unpickled.
    try:
        checkpoint = load_checkpoint(args.src)
    except (UnsafeCheckpointError, UnreadableCheckpointError) as error:
        sys.exit(f'error: {error}')
    try:
        converted = convert_checkpoint(checkpoint, use_ema=args.ema)
    except NotEfficientModCheckpoint as error:
        sys.exit(f'error: {args.src}: {error}')
    os.makedirs(osp.dirname(osp.abspath(args.dst)), exist_ok=True)
    # Write to a temporary name first so a failure never leaves half a file.
    tmp = args.dst + '.tmp'
    torch.save(converted, tmp)
    os.replace(tmp, args.dst)
    meta = converted['meta']
    print(f'{args.src} -> {args.dst}: EfficientMod-{meta["arch"]} '
          f'{meta["task"]} checkpoint, {len(converted["state_dict"])} tensors'
          f'{", EMA weights" if meta["ema"] else ""}.')


if __name__ == '__main__':
    main()
