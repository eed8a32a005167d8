"""Accuracy of each cpu_predictor precision against float32 (docs/speed.md).

For a trained classifier (CONFIG, CHECKPOINT), per precision on the config's
val split: the cosine similarity of the logits with the float32 ones (lowest
and mean), the top-1 agreement with float32 and the top-1 accuracy. Each
precision runs its ``'auto'`` engine; int8 is calibrated on batches of the
*train* split, never on the images it is scored on. ``--fixtures DIR`` adds
the parity fixtures' inputs, scored against the authors' reference logits
(no train split: their int8 row is the uncalibrated engine).
"""
import argparse
import glob
import os.path as osp
from typing import Dict, List

import torch
from mmengine.config import DictAction

from mmefficientmod.deploy import (PRECISIONS, cosine_similarity,
                                   cpu_predictor, load_weights, top1_agreement)
from mmefficientmod.models import build_model_from_config

CONFIG_DIR = osp.join(
    osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))), 'configs',
    'efficientmod')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config', nargs='?', help='classifier config')
    parser.add_argument('checkpoint', nargs='?', help='its trained weights')
    parser.add_argument(
        '--precisions',
        nargs='+',
        choices=PRECISIONS,
        default=list(PRECISIONS))
    parser.add_argument(
        '--fixtures',
        metavar='DIR',
        help='folder of parity fixtures efficientmod_<arch>.pt')
    parser.add_argument('--threads', type=int, default=None)
    parser.add_argument(
        '--calib-batches',
        type=int,
        default=8,
        help='train-split batches that calibrate int8')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config entries, e.g. '
        'val_dataloader.dataset.data_root=DIR')
    args = parser.parse_args(argv)
    if not args.config and not args.fixtures:
        parser.error('give a CONFIG and CHECKPOINT, or --fixtures DIR')
    if args.config and not args.checkpoint:
        parser.error('CONFIG needs its trained CHECKPOINT: agreement on '
                     'random weights says little')
    return args


def compare(logits: torch.Tensor, reference: torch.Tensor) -> Dict:
    cos = cosine_similarity(logits, reference, dim=1)
    return dict(
        cos_min=cos.min().item(),
        cos_mean=cos.mean().item(),
        top1_agree=top1_agreement(logits, reference))


def val_report(args) -> List[Dict]:
    from mmengine.config import Config
    from mmengine.runner import Runner
    cfg = Config.fromfile(args.config)
    # Also sets the config's default scope, which the dataloader needs.
    model = build_model_from_config(cfg, args.cfg_options)
    load_weights(model, args.checkpoint)
    loader = Runner.build_dataloader(cfg.val_dataloader)
    inputs, labels = [], []
    with torch.no_grad():
        for batch in loader:
            data = model.data_preprocessor(batch, False)
            inputs.append(data['inputs'].float())
            labels += [s.gt_label.item() for s in data['data_samples']]
    labels = torch.tensor(labels)
    with torch.no_grad():
        reference = torch.cat([model(x, mode='tensor') for x in inputs])
    calibration = Runner.build_dataloader(cfg.train_dataloader) \
        if 'int8' in args.precisions else None
    return precision_rows(args, model, inputs, reference,
                          f'val split ({len(labels)} images)', labels,
                          calibration)


def _top1(logits, labels):
    return '' if labels is None else \
        (logits.argmax(1) == labels).float().mean().item()


def precision_rows(args,
                   model,
                   inputs,
                   reference,
                   data,
                   labels=None,
                   calibration=None):
    """A row per precision of ``args.precisions``: the predictor's logits on
    ``inputs`` against the float32 ``reference`` logits, and both top-1
    accuracies where ``labels`` are known. int8 is calibrated on
    ``calibration`` (dataloader batches) when given."""
    rows = []
    for precision in args.precisions:
        options = dict(
            calibration_data=calibration,
            num_calibration_batches=args.calib_batches) if (
                precision == 'int8' and calibration is not None) else {}
        predictor = cpu_predictor(
            model, precision, threads=args.threads, **options)
        logits = torch.cat([predictor(x) for x in inputs])
        rows.append(
            dict(
                data=data,
                precision=precision,
                engine=predictor.engine,
                **compare(logits, reference),
                top1_acc=_top1(logits, labels),
                top1_acc_fp32=_top1(reference, labels)))
    return rows


def fixture_report(args) -> List[Dict]:
    from mmefficientmod.checkpoint import convert_released
    rows = []
    for path in sorted(
            glob.glob(osp.join(args.fixtures, 'efficientmod_*.pt'))):
        fixture = torch.load(path, weights_only=True)
        arch = fixture['arch']
        config = osp.join(
            CONFIG_DIR, 'efficientmod-'
            f"{arch.replace('_', '-')}_8xb256_in1k.py")
        model = build_model_from_config(config)
        model.load_state_dict(
            convert_released(fixture['checkpoint'])['state_dict'])
        inputs = [x.float() for x in fixture['inputs']]
        reference = torch.cat([y.float() for y in fixture['logits']])
        rows += precision_rows(
            args, model, inputs, reference,
            f'parity fixture {arch} ({len(reference)} images)')
    if not rows:
        raise FileNotFoundError(
            f'No efficientmod_<arch>.pt in {args.fixtures}.')
    return rows


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = val_report(args) if args.config else []
    if args.fixtures:
        rows += fixture_report(args)
    print('| data | precision | engine | cosine min | cosine mean | '
          'top-1 agreement | top-1 acc (fp32) |')
    print('|---|---|---|---|---|---|---|')
    for r in rows:
        acc = (f"{r['top1_acc']:.3f} ({r['top1_acc_fp32']:.3f})"
               if r['top1_acc'] != '' else '–')
        print(f"| {r['data']} | {r['precision']} | {r['engine']} | "
              f"{r['cos_min']:.6f} | {r['cos_mean']:.6f} | "
              f"{r['top1_agree']:.3f} | {acc} |")
    return rows


if __name__ == '__main__':
    main()
