"""Evaluate a checkpoint with an MMDetection, MMSegmentation or MMPretrain
config; one that leaves weights unloaded, or is unreadable, is refused with
the fix. Options: docs/training.md; refusals: docs/bad_inputs.md.

    python tools/test.py CONFIG CHECKPOINT [--out OUT] [--show-dir DIR]
    bash tools/dist_test.sh CONFIG CHECKPOINT NUM_PROCESSES [ARGS]
"""
import argparse
import json
import os
import os.path as osp

from _runner_utils import (add_runner_arguments, build_runner,
                           check_annotation_files, library_of, load_config)

from mmefficientmod.checkpoint.bad_files import check_readable


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Test (and evaluate) a detector, segmentor or classifier.')
    add_runner_arguments(parser, 'test_dataloader.batch_size=2')
    add = parser.add_argument
    add('checkpoint', help='checkpoint file')
    add('--out', help='a .pkl file, or for segmentation a folder of PNG masks')
    add('--show-dir', help='folder for pictures of the predictions')
    add('--show', action='store_true', help='show the predictions in a window')
    add('--wait-time', type=float, default=2, help='seconds per shown image')
    add('--metrics-file', help='also write the metrics to this JSON file')
    add('--allow-partial-checkpoint',
        action='store_true',
        help='load the part of the checkpoint that fits the model and test '
        'it, instead of refusing a checkpoint that leaves weights unloaded '
        '(EfficientModConfigCheckHook(strict_test_loading=False))')
    return parser.parse_args(argv)


def _enable_visualization(cfg, args, library):
    hook = cfg.get('default_hooks', {}).get('visualization')
    if hook is None:
        raise SystemExit('--show/--show-dir need default_hooks.visualization '
                         'in the config.')
    hook.interval = 1
    if library == 'mmpretrain':
        hook.update(enable=True, show=args.show, wait_time=args.wait_time)
        if args.show_dir:
            hook.out_dir = args.show_dir
        return
    hook.draw = True
    if args.show:
        hook.update(show=True, wait_time=args.wait_time)
    if args.show_dir and library == 'mmdet':
        hook.test_out_dir = args.show_dir
    elif args.show_dir:  # mmseg's hook draws through the visualizer's backends
        cfg.visualizer.save_dir = args.show_dir


def _add_dump(cfg, args, library):
    """Detection and classification dump a pickle (as their own tools do);
    segmentation writes PNG masks into the directory ``--out`` (as mmseg's
    tool does), or a pickle if it ends with ``.pkl``."""
    evaluators = cfg.test_evaluator
    if not isinstance(evaluators, (list, tuple)):
        evaluators = [evaluators]
    pickle = args.out.endswith(('.pkl', '.pickle'))
    if library == 'mmseg' and not pickle:
        evaluators[0].update(output_dir=args.out, keep_results=True)
        return
    if not pickle:
        raise SystemExit(f'--out must be a .pkl file, got {args.out!r}.')
    dump = 'DumpDetResults' if library == 'mmdet' else 'mmengine.DumpResults'
    cfg.test_evaluator = list(evaluators) + [
        dict(type=dump, out_file_path=args.out)
    ]


def build_config(args):
    cfg = load_config(args)
    if '://' not in args.checkpoint:
        if not osp.isfile(args.checkpoint):
            raise SystemExit(f'Checkpoint not found: {args.checkpoint}')
        check_readable(args.checkpoint)
    if args.allow_partial_checkpoint:
        for hook in cfg.get('custom_hooks', []):
            if hook.get('type') == 'EfficientModConfigCheckHook':
                hook['strict_test_loading'] = False
    cfg.load_from = args.checkpoint
    cfg.resume = False  # testing never resumes; the checkpoint is only loaded
    library = library_of(cfg)
    if args.show or args.show_dir:
        _enable_visualization(cfg, args, library)
    if args.out:
        _add_dump(cfg, args, library)
    return cfg


def main(argv=None):
    args = parse_args(argv)
    cfg = build_config(args)
    check_annotation_files(cfg, ('test', ))
    runner = build_runner(cfg)
    metrics = runner.test()
    if runner.rank == 0:
        metrics = {
            k: float(v) if hasattr(v, 'item') or isinstance(v, int) else v
            for k, v in metrics.items()
        }
        print('METRICS ' + json.dumps(metrics, sort_keys=True), flush=True)
        if args.metrics_file:
            os.makedirs(
                osp.dirname(osp.abspath(args.metrics_file)), exist_ok=True)
            with open(args.metrics_file, 'w', encoding='utf-8') as f:
                json.dump(metrics, f, indent=2, sort_keys=True)
    return metrics


if __name__ == '__main__':
    main()
