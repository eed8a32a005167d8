"""Export an EfficientMod model (or its backbone) to ONNX, and check it.

The exported graph has a dynamic batch size and input height and width
(input name ``input``, outputs ``output0``, ``output1``, ...). With
``--verify`` ONNX Runtime runs it at the export size and at a second size and
batch, and the outputs are compared with PyTorch's (the model as loaded, not
folded) to ``--tolerance``.

Example::

    python tools/deployment/pytorch2onnx.py \\
        configs/efficientmod/efficientmod-xxs_8xb256_in1k.py CHECKPOINT \\
        --out work_dirs/efficientmod_xxs.onnx --shape 224 224 --deploy --verify

CHECKPOINT may be one saved by this project, a converted one, or a released
(upstream) ImageNet checkpoint. Without one the weights are random, which is
enough to check the export itself.

``--int8`` writes the int8 model of
:func:`mmefficientmod.deploy.cpu_predictor` instead (the folded form,
statically quantised, QDQ, per-channel weights), calibrated on the first
``--calib-batches`` batches of the config's val dataloader; ``--verify`` then
checks the cosine similarity of its outputs with PyTorch's float32 ones
against ``--min-cosine``::

    python tools/deployment/pytorch2onnx.py CONFIG CHECKPOINT \
        --out work_dirs/efficientmod_xxs_int8.onnx --int8 --verify
"""
import argparse
import os
import os.path as osp
import shutil
import sys
import tempfile
from typing import List, Sequence, Tuple

import torch
import torch.nn as nn

from mmefficientmod.deploy import (cosine_similarity, cpu_predictor,
                                   deploy_copy, export_onnx, flatten_outputs,
                                   load_weights, onnxruntime_session)
from mmefficientmod.models import TensorMode, build_model_from_config


def compare_onnx(session,
                 module: nn.Module,
                 shapes: Sequence[Sequence[int]],
                 seed: int = 0) -> List[Tuple[Tuple[int, ...], float]]:
    """Largest absolute ONNX Runtime - PyTorch difference, per input shape."""
    gen = torch.Generator().manual_seed(seed)
    results = []
    for shape in shapes:
        x = torch.randn(*shape, generator=gen)
        with torch.no_grad():
            expected = flatten_outputs(module(x))
        got = session.run(None, {'input': x.numpy()})
        if len(got) != len(expected):
            raise RuntimeError(f'The ONNX model gives {len(got)} outputs, '
                               f'PyTorch {len(expected)}.')
        diff = max((torch.from_numpy(g) - e).abs().max().item()
                   for g, e in zip(got, expected))
        results.append((tuple(shape), diff))
    return results


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Export a model to ONNX.')
    parser.add_argument('config', help='model config file')
    parser.add_argument('checkpoint', nargs='?', help='weights (optional)')
    parser.add_argument('--out', required=True, help='output .onnx file')
    parser.add_argument(
        '--shape',
        nargs=2,
        type=int,
        default=[224, 224],
        metavar=('H', 'W'),
        help='example input size')
    parser.add_argument(
        '--backbone-only',
        action='store_true',
        help='export model.backbone (dense maps or pooled '
        'feature, as configured) instead of the whole model')
    parser.add_argument(
        '--deploy',
        action='store_true',
        help='export the folded inference form '
        '(backbone.switch_to_deploy()); same outputs, fewer ops')
    parser.add_argument('--opset', type=int, default=17)
    parser.add_argument(
        '--static',
        action='store_true',
        help='fixed input shape instead of dynamic axes')
    parser.add_argument(
        '--verify',
        action='store_true',
        help='compare ONNX Runtime with PyTorch')
    parser.add_argument(
        '--verify-shape',
        nargs=3,
        type=int,
        default=None,
        metavar=('N', 'H', 'W'),
        help='second input checked '
        'by --verify (default: 2 x (H - 31) x (W + 35))')
    parser.add_argument(
        '--tolerance',
        type=float,
        default=1e-4,
        help='largest absolute difference allowed')
    parser.add_argument(
        '--int8',
        action='store_true',
        help='write the int8 (statically quantised) model, '
        "calibrated on the config's val set")
    parser.add_argument(
        '--calib-batches',
        type=int,
        default=8,
        help='val batches that calibrate --int8')
    parser.add_argument(
        '--min-cosine',
        type=float,
        default=0.99,
        help='lowest cosine similarity with float32 that '
        '--verify accepts for --int8')
    args = parser.parse_args(argv)
    if args.int8 and args.static:
        parser.error('--int8 exports dynamic shapes only; drop --static')
    return args


def val_batches(config: str):
    """The config's val dataloader (its data must be in place)."""
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmengine.runner import Runner
    cfg = Config.fromfile(config)
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    return Runner.build_dataloader(cfg.val_dataloader)


def export_int8(model, args) -> int:
    predicted = model.backbone if args.backbone_only else model
    with tempfile.TemporaryDirectory() as workdir:
        predictor = cpu_predictor(
            predicted,
            'int8',
            engine='onnxruntime-static',
            calibration_data=val_batches(args.config),
            num_calibration_batches=args.calib_batches,
            workdir=workdir,
            example_shape=(1, 3, *args.shape))
        shutil.copyfile(predictor.onnx_path, args.out)
    print(f'exported {args.out} (int8, QDQ, calibrated on '
          f'{args.calib_batches} val batches)')
    if not args.verify:
        return 0
    x = torch.randn(
        2, 3, *args.shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = flatten_outputs(TensorMode(model, args.backbone_only)(x))
    got = flatten_outputs(predictor(x))
    cos = min(cosine_similarity(a, b).item() for a, b in zip(got, expected))
    passed = cos >= args.min_cosine
    print(f'cosine(int8, float32 pytorch) = {cos:.6f} '
          f'({"ok" if passed else "FAILED"}, at least {args.min_cosine})')
    return 0 if passed else 1


def main(argv=None):
    args = parse_args(argv)
    model = build_model_from_config(args.config)
    if args.checkpoint:
        load_weights(model, args.checkpoint)
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    if args.int8:
        return export_int8(model, args)
    exported = deploy_copy(model) if args.deploy else model
    h, w = args.shape
    names = export_onnx(
        TensorMode(exported, args.backbone_only),
        args.out, (1, 3, h, w),
        opset=args.opset,
        dynamic=not args.static)
    print(f'exported {args.out} ({len(names)} output(s), opset {args.opset}, '
          f'{"static" if args.static else "dynamic batch/height/width"})')
    if not args.verify:
        return 0
    session = onnxruntime_session(args.out)
    shapes = [(1, 3, h, w)]
    if not args.static:
        n2, h2, w2 = args.verify_shape or (2, max(h - 31, 32), w + 35)
        shapes.append((n2, 3, h2, w2))
    results = compare_onnx(session, TensorMode(model, args.backbone_only),
                           shapes)
    ok = True
    for shape, diff in results:
        passed = diff <= args.tolerance
        ok &= passed
        print(
            f'input {shape}: max |onnxruntime - pytorch| = {diff:.3e} '
            f'({"ok" if passed else "FAILED"}, tolerance {args.tolerance:g})')
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
