"""Generate the small synthetic datasets used by the tests and the CPU demo.

Usage::

    python tools/dataset_converters/make_embedded_data.py \
        [--root data/embedded] [--only coco|ade20k|imagenet] [--seed 0]

Re-running with the same parameters leaves existing data untouched.
"""
import argparse
import os.path as osp
import time

from embedded_data import make_ade20k, make_coco, make_imagenet

_MAKERS = dict(coco=make_coco, ade20k=make_ade20k, imagenet=make_imagenet)


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
