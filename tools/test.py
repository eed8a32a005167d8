"""Evaluate a checkpoint with an MMDetection, MMSegmentation or MMPretrain
config.

``--out``: detection and classification dump the predictions to a ``.pkl``
file (mmdet's ``DumpDetResults`` / mmengine's ``DumpResults``), as their own
tools do; segmentation writes the predicted masks as PNG files into the
directory ``OUT``, as mmseg's tool does (or a pickle if ``OUT`` ends with
``.pkl``). ``--show-dir``: pictures of the predictions, one per test image.
Multi-process testing: ``tools/dist_test.sh CONFIG CHECKPOINT N [ARGS]``.

A checkpoint that leaves weights of the model unloaded, or whose tensors
have other shapes, is refused (it would be scored as a partly random model),
with what the file holds and the fix; ``--allow-partial-checkpoint`` loads
the part that fits on purpose. An empty, truncated or non-checkpoint file
is reported before anything is built.
"""
import argparse
import json
import os
import os.path as osp

from _runner_utils import (add_runner_arguments, build_runner,
                           check_annotation_files, library_of, load_config,
                           set_local_rank)

from mmefficientmod.checkpoint.bad_files import check_readable


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Test (and evaluate) a detector, segmentor or classifier.')
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument(
        '--work-dir',
        help='directory for the test logs (default: '
        'work_dirs/<config name>)')
    parser.add_argument(
        '--out', help='where to dump the predictions (see module docstring)')
    parser.add_argument(
        '--show-dir',
        help='directory for pictures of the predictions; a '
        'relative path is taken inside work_dir/<timestamp> for detection, '
        'as in mmdet')
    parser.add_argument(
        '--show', action='store_true', help='show the predictions in a window')
    parser.add_argument(
        '--wait-time', type=float, default=2, help='seconds per shown image')
    parser.add_argument(
        '--metrics-file', help='also write the metrics to this JSON file')
    parser.add_argument(
        '--allow-partial-checkpoint',
        action='store_true',
        help='load the part of the checkpoint that fits the model and test '
        'it, instead of refusing a checkpoint that leaves weights unloaded '
        '(EfficientModConfigCheckHook(strict_test_loading=False))')
    add_runner_arguments(parser, 'test_dataloader.batch_size=2')
    args = parser.parse_args(argv)
    set_local_rank(args)
    return args


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
    evaluators = cfg.test_evaluator
    pickle = args.out.endswith(('.pkl', '.pickle'))
    if library == 'mmseg' and not pickle:
        evaluator = evaluators[0] if isinstance(evaluators,
                                                (list, tuple)) else evaluators
        evaluator.update(output_dir=args.out, keep_results=True)
        return
    if not pickle:
        raise SystemExit(f'--out must be a .pkl file, got {args.out!r}.')
    dump = dict(
        type='DumpDetResults'
        if library == 'mmdet' else 'mmengine.DumpResults',
        out_file_path=args.out)
    cfg.test_evaluator = list(evaluators) + [dump] if isinstance(
        evaluators, (list, tuple)) else [evaluators, dump]


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
    # Testing never resumes; the checkpoint is only loaded.
    cfg.resume = False

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
            k:
            (float(v) if isinstance(v,
                                    (int, float)) or hasattr(v, 'item') else v)
            for k, v in metrics.items()
        }
        print('METRICS ' + json.dumps(metrics, sort_keys=True), flush=True)
        if args.metrics_file:
            dirname = osp.dirname(osp.abspath(args.metrics_file))
            os.makedirs(dirname, exist_ok=True)
            with open(args.metrics_file, 'w', encoding='utf-8') as f:
                json.dump(metrics, f, indent=2, sort_keys=True)
    return metrics


if __name__ == '__main__':
    main()
