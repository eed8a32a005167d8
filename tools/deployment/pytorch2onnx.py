"""Export an EfficientMod model (or its backbone) to ONNX, and check it.

Example::

    python tools/deployment/pytorch2onnx.py \\
        configs/efficientmod/efficientmod-xxs_8xb256_in1k.py CHECKPOINT \\
        --out work_dirs/efficientmod_xxs.onnx --shape 224 224 --deploy --verify

What the graph takes and gives, ``--verify`` and ``--int8``:
docs/deployment.md, "ONNX export of the classifier or the backbone".
"""
import argparse
import os
import os.path as osp
import shutil
import sys
import tempfile

import torch

from mmefficientmod.deploy import (cosine_similarity, cpu_predictor,
                                   deploy_copy, export_onnx, flatten_outputs,
                                   load_weights, onnxruntime_session)
from mmefficientmod.models import TensorMode, build_model_from_config


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Export a model to ONNX.')
    add = parser.add_argument
    add('config', help='model config file')
    add('checkpoint', nargs='?', help='weights (default: random ones)')
    add('--out', required=True, help='output .onnx file')
    add('--shape', nargs=2, type=int, default=[224, 224], metavar=('H', 'W'))
    add('--backbone-only', action='store_true', help='export model.backbone')
    add('--deploy', action='store_true', help='export the folded form')
    add('--opset', type=int, default=17)
    add('--static', action='store_true', help='no dynamic axes')
    add('--verify', action='store_true', help='check with ONNX Runtime')
    add('--tolerance', type=float, default=1e-4, help='largest abs difference')
    add('--int8', action='store_true', help='export the int8 model')
    add('--calib-batches', type=int, default=8, help='for --int8 (val set)')
    add('--min-cosine', type=float, default=0.99, help='lowest int8 cosine')
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


def output_pairs(run, model, shapes):
    """``(shape, [(run's output, PyTorch's), ...])`` for one random input of
    each shape."""
    gen = torch.Generator().manual_seed(0)
    for shape in shapes:
        x = torch.randn(*shape, generator=gen)
        with torch.no_grad():
            expected = flatten_outputs(model(x))
        got = [torch.as_tensor(out) for out in run(x)]
        if len(got) != len(expected):
            raise RuntimeError(f'The ONNX model gives {len(got)} outputs, '
                               f'PyTorch {len(expected)}.')
        yield tuple(shape), list(zip(got, expected))


def main(argv=None):
    args = parse_args(argv)
    model = build_model_from_config(args.config)
    if args.checkpoint:
        load_weights(model, args.checkpoint)
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    reference = TensorMode(model, args.backbone_only)  # as loaded, not folded
    h, w = args.shape
    ok = True
    if args.int8:
        with tempfile.TemporaryDirectory() as workdir:
            predictor = cpu_predictor(
                model.backbone if args.backbone_only else model,
                'int8',
                engine='onnxruntime-static',
                calibration_data=val_batches(args.config),
                num_calibration_batches=args.calib_batches,
                workdir=workdir,
                example_shape=(1, 3, h, w))
            shutil.copyfile(predictor.onnx_path, args.out)
        print(f'exported {args.out} (int8, QDQ, calibrated on '
              f'{args.calib_batches} val batches)')
        if not args.verify:
            return 0
        outputs = output_pairs(lambda x: flatten_outputs(predictor(x)),
                               reference, [(2, 3, h, w)])
        for shape, pairs in outputs:
            cos = min(cosine_similarity(a, b).item() for a, b in pairs)
            ok &= cos >= args.min_cosine
            print(f'input {shape}: cosine(int8, float32 pytorch) = {cos:.6f} '
                  f'({"ok" if ok else "FAILED"}, at least {args.min_cosine})')
        return 0 if ok else 1
    exported = deploy_copy(model) if args.deploy else model
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
        # another batch, height and width: the dynamic axes at work
        shapes.append((2, 3, max(h - 31, 32), w + 35))
    for shape, pairs in output_pairs(
            lambda x: session.run(None, {'input': x.numpy()}), reference,
            shapes):
        diff = max((a - b).abs().max().item() for a, b in pairs)
        passed = diff <= args.tolerance
        ok &= passed
        print(f'input {shape}: max |onnxruntime - pytorch| = {diff:.3e} '
              f'({"ok" if passed else "FAILED"}, tolerance '
              f'{args.tolerance:g})')
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
