"""Print the parameters and FLOPs (multiply-adds) of the model of any config
(docs/training.md).

    python tools/analysis_tools/get_flops.py CONFIG [--shape H W] [--backbone-only]
"""
import argparse
import math

import torch
import torch.nn as nn
from mmengine.analysis import FlopAnalyzer, parameter_count
from mmengine.analysis.jit_handles import get_shape
from mmengine.config import Config, DictAction

from mmefficientmod.models import TensorMode, build_model_from_config


def sdpa_flop_jit(inputs, outputs) -> int:
    """Multiply-adds of ``scaled_dot_product_attention``: q k^T, then (.) v.

    mmengine's counter has no handle for the fused op and would skip it,
    under-counting the attention stages.
    """
    q, k, v = (get_shape(x) for x in inputs[:3])
    *batch, length, dims = q
    return math.prod(batch) * length * k[-2] * (dims + v[-1])


def count_flops(module: nn.Module, inputs: torch.Tensor) -> int:
    """Multiply-adds of ``module(inputs)``, attention included (the
    benchmark's count too)."""
    with torch.no_grad():
        analyzer = FlopAnalyzer(module, inputs)
        analyzer.set_op_handle('aten::scaled_dot_product_attention',
                               sdpa_flop_jit)
        analyzer.unsupported_ops_warnings(False).uncalled_modules_warnings(
            False)
        return analyzer.total()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    add = parser.add_argument
    add('config', help='config file')
    add('--shape', type=int, nargs='+', default=[224, 224], help='H [W]')
    add('--backbone-only', action='store_true', help='the backbone alone')
    add('--cfg-options', nargs='+', action=DictAction, help='config overrides')
    args = parser.parse_args()
    height, width = (args.shape * 2)[:2]
    cfg = Config.fromfile(args.config)
    # Weights do not change the count; pretrained files need not exist.
    model = build_model_from_config(cfg, args.cfg_options, init_weights=False)
    samples = None
    if cfg.get('default_scope') == 'mmdet':
        # The image metainfo that mmdet's heads read in tensor mode.
        from mmdet.structures import DetDataSample
        metainfo = dict.fromkeys(
            ('img_shape', 'ori_shape', 'pad_shape', 'batch_input_shape'),
            (height, width))
        samples = [
            DetDataSample(metainfo=dict(metainfo, scale_factor=(1., 1.)))
        ]
    module = TensorMode(model, args.backbone_only, samples)
    flops = count_flops(module, torch.randn(1, 3, height, width))
    params = parameter_count(module)['']
    print(f'config: {args.config}')
    print(f'input: 1x3x{height}x{width}' +
          (' (backbone only)' if args.backbone_only else ''))
    print(f'params: {params / 1e6:.3f} M ({params:,})')
    print(f'FLOPs: {flops / 1e9:.3f} G (multiply-adds)')


if __name__ == '__main__':
    main()
