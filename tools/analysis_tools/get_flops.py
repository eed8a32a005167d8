"""Print the parameters and FLOPs of the model of any config.

    python tools/analysis_tools/get_flops.py CONFIG [--shape H W] [--backbone-only]

Works for mmpretrain classifiers, mmdet detectors and mmseg segmentors. FLOPs
are counted as multiply-adds (the convention of the paper and of OpenMMLab),
for one image of the given size, on the model's ``tensor`` forward (no
post-processing).
"""
import argparse

import torch
import torch.nn as nn
from flops import count_flops
from mmengine.analysis import parameter_count
from mmengine.config import Config, DictAction

from mmefficientmod.models import TensorMode, build_model_from_config


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('config', help='config file')
    parser.add_argument(
        '--shape',
        type=int,
        nargs='+',
        default=[224, 224],
        help='input height and width (one value for a square)')
    parser.add_argument(
        '--backbone-only',
        action='store_true',
        help='count the backbone alone')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config settings, as in tools/train.py')
    return parser.parse_args()


def detection_samples(height: int, width: int):
    """Data samples with the metainfo mmdet's heads read in tensor mode."""
    from mmdet.structures import DetDataSample
    sample = DetDataSample()
    sample.set_metainfo(
        dict(
            img_shape=(height, width),
            ori_shape=(height, width),
            pad_shape=(height, width),
            scale_factor=(1., 1.),
            batch_input_shape=(height, width)))
    return [sample]


def build_counted_module(cfg: Config, height: int, width: int,
                         backbone_only: bool) -> nn.Module:
    # Weights do not change the count; pretrained files need not exist.
    model = build_model_from_config(cfg, init_weights=False)
    samples = None
    if cfg.get('default_scope') == 'mmdet':
        samples = detection_samples(height, width)
    return TensorMode(model, backbone_only, samples)


def main():
    args = parse_args()
    height, width = (args.shape * 2)[:2]
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    module = build_counted_module(cfg, height, width, args.backbone_only)
    inputs = torch.randn(1, 3, height, width)
    flops = count_flops(module, inputs)
    params = parameter_count(module)['']
    print(f'config: {args.config}')
    print(
        f'input: 1x3x{height}x{width}{" (backbone only)" if args.backbone_only else ""}'
    )
    print(f'params: {params / 1e6:.3f} M ({params:,})')
    print(f'FLOPs: {flops / 1e9:.3f} G (multiply-adds)')


if __name__ == '__main__':
    main()
