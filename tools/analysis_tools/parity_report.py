"""Build every EfficientMod arch from its config and check it against the reference.

    python tools/analysis_tools/parity_report.py [--parity-dir DIR]

For each of xxs, xs, s and s_conv: parameters and FLOPs (multiply-adds at
224x224) of the ImageNet classifier beside the paper's figures; for each arch
with a parity fixture (a released-format checkpoint with the reference model's
outputs), the checkpoint goes through the converter and the largest absolute
difference of the logits and of the four dense outputs is printed.
"""
import argparse
import os
import os.path as osp

import torch
from flops import count_flops

from mmefficientmod import EfficientMod
from mmefficientmod.checkpoint import convert_released
from mmefficientmod.models import TensorMode, build_model_from_config

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
PAPER = {
    'xxs': (4.7, 0.6),
    'xs': (6.6, 0.8),
    's': (12.9, 1.4),
    's_conv': (12.9, 1.5)
}
TOLERANCE = 1e-4


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument(
        '--parity-dir',
        nargs='+',
        default=[
            osp.join(os.environ.get('MMEFFICIENTMOD_REFERENCE', ''), 'parity'),
            osp.join(REPO, 'tests', 'data', 'parity')
        ],
        help='folders searched, in order, for efficientmod_<arch>.pt fixtures')
    return parser.parse_args()


def build_classifier(arch: str):
    config = osp.join(REPO, 'configs', 'efficientmod',
                      f'efficientmod-{arch.replace("_", "-")}_8xb256_in1k.py')
    return build_model_from_config(config, init_weights=False)


def find_fixture(arch, folders):
    for folder in folders:
        path = osp.join(folder, f'efficientmod_{arch}.pt')
        if osp.isfile(path):
            return path
    return None


def parity(arch, classifier, fixture):
    """Largest |ours - reference| over both inputs, for logits and dense outputs."""
    classifier.load_state_dict(
        convert_released(fixture['checkpoint'])['state_dict'])
    dense = EfficientMod(
        arch).eval()  # the four stage outputs, before the final norm
    dense.load_state_dict(classifier.backbone.state_dict(), strict=False)
    worst_logits, worst_dense = 0., 0.
    with torch.no_grad():
        for x, logits, features in zip(fixture['inputs'], fixture['logits'],
                                       fixture['features']):
            x = x.float()
            worst_logits = max(worst_logits,
                               (classifier(x, mode='tensor') -
                                logits.float()).abs().max().item())
            for out, ref in zip(dense(x), features):
                worst_dense = max(worst_dense,
                                  (out - ref.float()).abs().max().item())
    return worst_logits, worst_dense


def main():
    args = parse_args()
    header = (
        f'{"arch":<7} {"params":>12} {"paper":>6} {"GFLOPs":>7} {"paper":>6}  '
        f'{"max |dlogits|":>14} {"max |ddense|":>13}  parity')
    print(header)
    print('-' * len(header))
    failed = False
    for arch, (paper_params, paper_flops) in PAPER.items():
        classifier = build_classifier(arch)
        params = sum(p.numel() for p in classifier.parameters())
        flops = count_flops(
            TensorMode(classifier), torch.randn(1, 3, 224, 224)) / 1e9
        row = f'{arch:<7} {params:>12,} {paper_params:>5}M {flops:>7.3f} {paper_flops:>5}G  '
        path = find_fixture(arch, args.parity_dir)
        if path is None:
            print(row + f'{"-":>14} {"-":>13}  no fixture')
            continue
        logits, dense = parity(arch, classifier,
                               torch.load(path, weights_only=True))
        ok = max(logits, dense) <= TOLERANCE
        failed |= not ok
        print(
            row +
            f'{logits:>14.2e} {dense:>13.2e}  {"OK" if ok else "FAILED"} (<= {TOLERANCE:g})'
        )
    if failed:
        raise SystemExit('parity FAILED: see the table above')


if __name__ == '__main__':
    main()
