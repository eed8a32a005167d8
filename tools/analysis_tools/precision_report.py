"""Accuracy of each cpu_predictor precision against float32 (docs/speed.md).

    python tools/analysis_tools/precision_report.py CONFIG CHECKPOINT \\
        [--cfg-options val_dataloader.dataset.data_root=DIR]

The agreement on the parity fixtures (the authors' reference logits) is
held by the tests (docs/speed.md).
"""
import argparse
from typing import Dict, List

import torch
from mmengine.config import Config, DictAction
from mmengine.runner import Runner

from mmefficientmod.deploy import (PRECISIONS, cosine_similarity,
                                   cpu_predictor, load_weights, top1_agreement)
from mmefficientmod.models import build_model_from_config


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    add = parser.add_argument
    add('config', help='classifier config')
    add('checkpoint', help='its trained weights')
    add('--precisions', nargs='+', choices=PRECISIONS, default=PRECISIONS)
    add('--threads', type=int)
    add('--calib-batches', type=int, default=8, help='of the train split')
    add('--cfg-options', nargs='+', action=DictAction, help='config overrides')
    return parser.parse_args(argv)


def val_report(args) -> List[Dict]:
    """The rows of the config's val split; int8 calibrated on batches of the
    train split, never on the images it is scored on."""
    cfg = Config.fromfile(args.config)
    # Also sets the config's default scope, which the dataloader needs.
    model = build_model_from_config(cfg, args.cfg_options)
    load_weights(model, args.checkpoint)
    inputs, labels = [], []
    with torch.no_grad():
        for batch in Runner.build_dataloader(cfg.val_dataloader):
            data = model.data_preprocessor(batch, False)
            inputs.append(data['inputs'].float())
            labels += [s.gt_label.item() for s in data['data_samples']]
        reference = torch.cat([model(x, mode='tensor') for x in inputs])
    calibration = Runner.build_dataloader(cfg.train_dataloader) \
        if 'int8' in args.precisions else None
    return precision_rows(args, model, inputs, reference,
                          f'val split ({len(labels)} images)',
                          torch.tensor(labels), calibration)


def precision_rows(args, model, inputs, reference, data, labels, calibration):
    """A row per precision of ``args.precisions``: the predictor's logits on
    ``inputs`` against the float32 ``reference`` logits, and both top-1
    accuracies on ``labels``; int8 is calibrated on ``calibration``
    (dataloader batches)."""

    def top1(logits):
        return (logits.argmax(1) == labels).float().mean().item()

    rows = []
    for precision in args.precisions:
        predictor = cpu_predictor(
            model,
            precision,
            calibration_data=calibration,
            num_calibration_batches=args.calib_batches,
            threads=args.threads)
        logits = torch.cat([predictor(x) for x in inputs])
        cos = cosine_similarity(logits, reference, dim=1)
        rows.append(
            dict(
                data=data,
                precision=precision,
                engine=predictor.engine,
                cos_min=cos.min().item(),
                cos_mean=cos.mean().item(),
                top1_agree=top1_agreement(logits, reference),
                top1_acc=top1(logits),
                top1_acc_fp32=top1(reference)))
    return rows


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = val_report(args)
    print('| data | precision | engine | cosine min | cosine mean | '
          'top-1 agreement | top-1 acc (fp32) |')
    print('|---|---|---|---|---|---|---|')
    for r in rows:
        print(f"| {r['data']} | {r['precision']} | {r['engine']} | "
              f"{r['cos_min']:.6f} | {r['cos_mean']:.6f} | "
              f"{r['top1_agree']:.3f} | {r['top1_acc']:.3f} "
              f"({r['top1_acc_fp32']:.3f}) |")
    return rows


if __name__ == '__main__':
    main()
