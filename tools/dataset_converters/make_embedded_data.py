"""Generate the small synthetic datasets used by the tests and the CPU demo.

Usage::

    python tools/dataset_converters/make_embedded_data.py \
        [--root data/embedded] [--only coco|ade20k|ade20k_shapes|imagenet]
        [--seed 0]

``ade20k_shapes`` is the COCO images' shapes in the ADE20K layout, written
from ``<root>/coco`` (made first when missing). Re-running with the same
parameters leaves existing data untouched.
"""
import argparse
import os.path as osp
import time

from synthetic_data import (make_ade20k, make_ade20k_shapes, make_coco,
                            make_imagenet)


def make_shapes(root, seed):
    coco = osp.join(osp.dirname(root), 'coco')
    make_coco(coco, seed=seed)
    return make_ade20k_shapes(root, coco)


_MAKERS = dict(
    coco=make_coco,
    ade20k=make_ade20k,
    ade20k_shapes=make_shapes,
    imagenet=make_imagenet)


def parse_args():
    parser = argparse.ArgumentParser(
        description='Write the embedded COCO / ADE20K / ImageNet datasets.')
    parser.add_argument(
        '--root',
        default='data/embedded',
        help='output directory; datasets go to <root>/<name>')
    parser.add_argument(
        '--only', choices=sorted(_MAKERS), help='generate only this dataset')
    parser.add_argument('--seed', type=int, default=0, help='random seed')
    return parser.parse_args()


def describe(name, summary):
    """One line per split: where the data is and how much of it there is."""
    state = 'generated' if summary['generated'] else 'up to date, skipped'
    lines = [
        f"{name}: {summary['root']} ({state}); "
        f"classes: {', '.join(summary['classes'])}"
    ]
    for split, info in summary['splits'].items():
        counts = ', '.join(f'{key}={value}' for key, value in info.items()
                           if key.startswith('num_'))
        paths = ', '.join(
            osp.join(summary['root'], value) for key, value in info.items()
            if not key.startswith('num_'))
        lines.append(f'  {split}: {counts}; {paths}')
    return '\n'.join(lines)


def main():
    args = parse_args()
    names = [args.only] if args.only else list(_MAKERS)
    for name in names:
        start = time.perf_counter()
        summary = _MAKERS[name](osp.join(args.root, name), seed=args.seed)
        print(describe(name, summary))
        print(f'  took {time.perf_counter() - start:.2f}s')


if __name__ == '__main__':
    main()
