"""Train a model from an MMDetection, MMSegmentation or MMPretrain config
(options, resuming and the checks made before training: docs/training.md).

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CHECKPOINT]]
    bash tools/dist_train.sh CONFIG NUM_PROCESSES [ARGS]
"""
import argparse
import os
import os.path as osp

from _runner_utils import (add_runner_arguments, build_runner,
                           check_annotation_files, library_of, load_config)

from mmefficientmod.config_tree import walk_config


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Train a detector, segmentor or classifier.')
    add_runner_arguments(parser,
                         'train_cfg.max_epochs=2 "model.backbone.arch=xs"')
    add = parser.add_argument
    add('--resume', nargs='?', const='auto', help='CHECKPOINT or the latest')
    add('--amp',
        nargs='?',
        const='float16',
        choices=['float16', 'bfloat16'],
        help='mixed precision on a GPU (default: float16)')
    add('--auto-scale-lr', action='store_true', help='by the total batch size')
    return parser.parse_args(argv)


def roi_align_through_torchvision(node) -> int:
    """Make every mmcv ``RoIAlign`` in a model config run torchvision's
    roi_align; returns how many were switched.

    mmcv 2.1's RoIAlign kernels take float32 and float16 only, so bfloat16
    autocast features stop Mask R-CNN; torchvision's roi_align computes the
    same aligned average and runs bfloat16 inputs in float32 under autocast.
    """
    switched = 0
    for _, layer in walk_config(node):
        if layer.get('type') == 'RoIAlign':
            layer['use_torchvision'] = True
            switched += 1
    return switched


def enable_amp(cfg, dtype: str) -> None:
    """Switch the config's OptimWrapper to mmengine's AmpOptimWrapper in
    ``dtype``; SystemExit naming the fix where that cannot run."""
    import torch
    if not torch.cuda.is_available():
        raise SystemExit(
            '--amp needs a CUDA GPU (mmengine\'s AmpOptimWrapper); drop '
            '--amp to train in float32 on this machine.')
    if dtype == 'bfloat16' and not torch.cuda.is_bf16_supported():
        raise SystemExit(
            f'--amp bfloat16 needs a GPU with bfloat16 support (compute '
            f'capability 8.0 or newer); {torch.cuda.get_device_name()} has '
            f'none: use --amp float16.')
    optim_type = cfg.optim_wrapper.get('type', 'OptimWrapper')
    if optim_type not in ('OptimWrapper', 'AmpOptimWrapper'):
        raise SystemExit(f'--amp only converts an OptimWrapper; the config '
                         f'uses {optim_type}.')
    cfg.optim_wrapper.update(type='AmpOptimWrapper', dtype=dtype)
    if dtype == 'bfloat16':
        roi_align_through_torchvision(cfg.model)
    # bfloat16 has float32's exponent range: its gradients need no scaling.
    cfg.optim_wrapper.setdefault('loss_scale',
                                 'dynamic' if dtype == 'float16' else 1.0)


def build_config(args):
    cfg = load_config(args)
    if args.amp:
        enable_amp(cfg, args.amp)
    if args.auto_scale_lr:
        if 'base_batch_size' not in (cfg.get('auto_scale_lr') or {}):
            raise SystemExit(
                '--auto-scale-lr needs auto_scale_lr.base_batch_size in the '
                'config.')
        cfg.auto_scale_lr.enable = True
    if args.resume is not None:
        cfg.resume = True
        cfg.load_from = None if args.resume == 'auto' else args.resume
    return cfg


def lock_work_dir_early(cfg):
    """The work dir's lock (SafeCheckpointHook's) taken before the runner
    writes its logs and config there, so that a run refused for a live one
    in the same work dir leaves it untouched; rank 0 only, None otherwise
    or where the config turns the lock off."""
    from mmefficientmod.engine.safety_hooks import lock_work_dir
    hook = (cfg.get('default_hooks') or {}).get('checkpoint') or {}
    rank = os.environ.get('RANK', os.environ.get('SLURM_PROCID', '0'))
    if hook.get('type') != 'SafeCheckpointHook' or not hook.get(
            'lock_work_dir', True) or rank != '0':
        return None
    return lock_work_dir(osp.abspath(cfg.work_dir))


def main(argv=None):
    args = parse_args(argv)
    cfg = build_config(args)
    check_annotation_files(cfg, ('train', 'val') if cfg.get('val_cfg') else
                           ('train', ))
    lock = lock_work_dir_early(cfg)  # noqa: F841 (held until the process ends)
    runner = build_runner(cfg)
    print(
        f'[{library_of(cfg)}] training {osp.basename(args.config)}; '
        f'work dir {cfg.work_dir}',
        flush=True)
    runner.train()


if __name__ == '__main__':
    main()
