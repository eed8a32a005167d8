"""Write the small synthetic datasets used by the tests and the CPU demo.

    python tools/dataset_converters/make_embedded_data.py \
        [--root data/embedded] [--only coco|ade20k|ade20k_shapes|imagenet]

``ade20k_shapes`` (the COCO images' shapes) also writes ``<root>/coco``.
See synthetic_data.py beside this file.
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


def main():
    parser = argparse.ArgumentParser(
        description='Write the embedded COCO / ADE20K / ImageNet datasets.')
    add = parser.add_argument
    add('--root',
        default='data/embedded',
        help='output directory; datasets go to <root>/<name>')
    add('--only', choices=sorted(_MAKERS), help='generate only this dataset')
    add('--seed', type=int, default=0, help='random seed')
    args = parser.parse_args()
    for name in [args.only] if args.only else _MAKERS:
        start = time.perf_counter()
        summary = _MAKERS[name](osp.join(args.root, name), seed=args.seed)
        state = 'generated' if summary['generated'] else 'up to date, skipped'
        print(f"{name}: {summary['root']} ({state}, "
              f'{time.perf_counter() - start:.2f}s)')
        for split, info in summary['splits'].items():
            print(f'  {split}: ' + ', '.join(f'{k}={v}'
                                             for k, v in info.items()))


if __name__ == '__main__':
    main()
