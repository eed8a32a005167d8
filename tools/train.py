"""Train a model from an MMDetection, MMSegmentation or MMPretrain config.

Usage::

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp]
        [--auto-scale-lr] [--cfg-options KEY=VALUE ...]
        [--launcher {none,pytorch,slurm,mpi}]

``--resume`` alone resumes from the latest checkpoint in the work dir;
``--resume CKPT`` resumes from that checkpoint. Multi-process training:
``tools/dist_train.sh CONFIG NUM_PROCESSES [ARGS]``.
"""
import argparse
import os.path as osp

from _runner_utils import (add_runner_arguments,
                           build_runner, check_annotation_files, library_of,
                           load_config, set_local_rank)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Train a detector, segmentor or classifier.')
    parser.add_argument('config', help='config file')
    parser.add_argument(
        '--work-dir', help='directory for logs and checkpoints (default: '
        'work_dirs/<config name>)')
    parser.add_argument(
        '--resume',
        nargs='?',
        type=str,
        const='auto',
        help='resume from the given checkpoint, or from the latest one in '
        'the work dir when no checkpoint is given')
    parser.add_argument(
        '--amp', action='store_true',
        help='automatic mixed precision training (needs a GPU)')
    parser.add_argument(
        '--auto-scale-lr', action='store_true',
        help='scale the learning rate by the actual total batch size over '
        'the config\'s auto_scale_lr.base_batch_size')
    add_runner_arguments(
        parser, 'train_cfg.max_epochs=2 "model.backbone.arch=xs"')
    args = parser.parse_args(argv)
    set_local_rank(args)
    return args


def build_config(args):
    cfg = load_config(args)

    if args.amp:
        import torch
        if not torch.cuda.is_available():
            raise SystemExit(
                '--amp needs a CUDA GPU (mmengine\'s AmpOptimWrapper); drop '
                '--amp to train in float32 on this machine.')
        optim_type = cfg.optim_wrapper.get('type', 'OptimWrapper')
        if optim_type == 'AmpOptimWrapper':
            print('AMP training is already enabled in the config.')
        else:
            if optim_type != 'OptimWrapper':
                raise SystemExit(
                    f'--amp only converts an OptimWrapper; the config uses '
                    f'{optim_type}.')
            cfg.optim_wrapper.type = 'AmpOptimWrapper'
            cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')

    if args.auto_scale_lr:
        if 'auto_scale_lr' not in cfg or 'base_batch_size' not in \
                cfg.auto_scale_lr:
            raise SystemExit(
                '--auto-scale-lr needs auto_scale_lr.base_batch_size in the '
                'config.')
        cfg.auto_scale_lr.enable = True

    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        cfg.resume = True
        cfg.load_from = args.resume
    return cfg


def main(argv=None):
    args = parse_args(argv)
    cfg = build_config(args)
    check_annotation_files(
        cfg, ('train', 'val') if cfg.get('val_cfg') else ('train', ))
    runner = build_runner(cfg)
    print(f'[{library_of(cfg)}] training {osp.basename(args.config)}; '
          f'work dir {cfg.work_dir}', flush=True)
    runner.train()


if __name__ == '__main__':
    main()
