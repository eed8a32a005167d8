"""The paper's pipeline in miniature, on the embedded data, on a CPU.

    python tools/main_job.py [--work-dir work_dirs/main_job]
        [--data-root data/embedded]

Stages, outputs and results: docs/main_job.md.
"""
import argparse
import json
import os
import os.path as osp
import sys
import time
from contextlib import contextmanager

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
PRETRAIN_CONFIG = ('configs/efficientmod/'
                   'efficientmod-xxs_1xb32_embedded-64px.py')
# The pretraining set: 4,000 images (the default embedded ImageNet has a few
# dozen) in its own folder, so the tests' data stays as it is. With 640 the
# classifier overfitted and its weights did not help Mask R-CNN.
PRETRAIN_DATA = dict(
    folder='imagenet_pretrain',
    num_per_class_train=1000,
    num_per_class_val=40,
    img_size=64)
TASKS = {
    'det':
    dict(
        name='Mask R-CNN',
        config='configs/mask_rcnn/mask-rcnn_efficientmod-xxs_fpn_embedded.py',
        data='coco',
        metrics=[('coco/bbox_mAP', 'box mAP'),
                 ('coco/bbox_mAP_50', 'box mAP@50'),
                 ('coco/segm_mAP', 'mask mAP'),
                 ('coco/segm_mAP_50', 'mask mAP@50')],
        headline=('coco/bbox_mAP', 'coco/segm_mAP'),
        score_thr=0.3,
        # 2 of the config's 6 epochs (30 steps each): the whole job then fits
        # in 8 minutes on 2 cores; the config's warm-up, its cosine ending
        # with the run.
        schedule={
            'train_cfg.max_epochs': 2,
            'train_cfg.val_interval': 2,
            'param_scheduler.1.T_max': 2,
            'param_scheduler.1.end': 2,
        }),
    'seg':
    dict(
        name='Semantic FPN',
        config='configs/sem_fpn/fpn_efficientmod-xxs_embedded-shapes.py',
        data='ade20k_shapes',
        metrics=[('mIoU', 'mIoU'), ('mAcc', 'mAcc'), ('aAcc', 'aAcc')],
        headline=('mIoU', ),
        score_thr=None,
        # 60 of the config's 120 iterations, to fit in the 8 minutes; the
        # config's warm-up (10), its cosine ending with the run.
        schedule={
            'train_cfg.max_iters': 60,
            'train_cfg.val_interval': 60,
            'param_scheduler.1.T_max': 50,
            'param_scheduler.1.end': 60,
        }),
}
RUNS = (('untrained', 'untrained'), ('scratch', 'from scratch'),
        ('imagenet', 'ImageNet-initialised'))


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    add = parser.add_argument
    add('--work-dir',
        default='work_dirs/main_job',
        help='checkpoints, logs, pictures and the summary go here')
    add('--data-root',
        default='data/embedded',
        help='where the embedded datasets are written (and reused)')
    return parser.parse_args()


@contextmanager
def output_to(log_path):
    """Send everything written to stdout and stderr (Python, C++ and the
    loggers the libraries create meanwhile) to ``log_path``."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(fd) for fd in (1, 2)]
    with open(log_path, 'a', encoding='utf-8') as log:
        for fd in (1, 2):
            os.dup2(log.fileno(), fd)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            for fd, copy in zip((1, 2), saved):
                os.dup2(copy, fd)
                os.close(copy)


def make_hook(bar, task, train, pictures):
    """A hook that advances the progress ``bar``'s ``task`` per iteration,
    records the validation metrics and, with ``pictures=(folder, suffix,
    score_thr)``, draws each validation image (ground truth | prediction)."""
    import mmcv
    from mmengine.hooks import Hook

    class StageHook(Hook):
        priority = 'VERY_LOW'
        metrics = {}

        def before_run(self, runner):  # both loops are built by now
            bar.update(
                task,
                total=(runner.max_iters if train else 0) +
                len(runner.val_loop.dataloader))

        def after_train_iter(self, *args, **kwargs):
            bar.advance(task)

        def after_val_iter(self, runner, batch_idx, data_batch, outputs):
            bar.advance(task)
            if pictures is None:
                return
            folder, suffix, score_thr = pictures
            extra = {} if score_thr is None else dict(pred_score_thr=score_thr)
            for sample in outputs:
                stem = osp.splitext(osp.basename(sample.img_path))[0]
                name = f'{stem}_{suffix}.jpg'
                runner.visualizer.add_datasample(
                    name,
                    mmcv.imread(sample.img_path, channel_order='rgb'),
                    data_sample=sample,
                    draw_gt=True,
                    show=False,
                    out_file=osp.join(folder, name),
                    **extra)

        def after_val_epoch(self, runner, metrics=None):
            # mmseg reports numpy floats, which json cannot write
            self.metrics = {
                k: float(v) if hasattr(v, '__float__') else v
                for k, v in (metrics or {}).items()
            }

    return StageHook()


def run_stage(bar, label, log, config, work_dir, options, train, pictures):
    """Train (and validate) ``config``, or only validate it when ``train``
    is False; returns the validation metrics, the last checkpoint and the
    seconds."""
    from _runner_utils import build_runner
    from mmengine.config import Config
    from mmengine.runner import find_latest_checkpoint
    task = bar.add_task(label, total=None)
    start = time.time()
    try:
        with output_to(log):
            cfg = Config.fromfile(osp.join(REPO, config))
            cfg.merge_from_dict(options)
            cfg.work_dir = work_dir
            cfg.launcher = 'none'
            cfg.start_over = True  # each run of the job redoes its stages
            # The libraries' configs name their visualizer 'visualizer', and
            # mmengine hands back the instance of that name made by an earlier
            # stage of this process, which would write this stage's scalars
            # into that stage's dir.
            if cfg.get('visualizer') is not None:
                cfg.visualizer.name = f'main_job:{work_dir}'
            runner = build_runner(cfg)
            hook = make_hook(bar, task, train, pictures)
            runner.register_hook(hook)
            if train:
                runner.train()
            else:
                # unseen weights: the model's own initialisation, untrained
                runner.model.init_weights()
                runner.val()
    except Exception as exc:
        raise SystemExit(f'{label} failed: {type(exc).__name__}: {exc}\n'
                         f'The full log is {log}') from exc
    return dict(
        metrics=hook.metrics,
        checkpoint=find_latest_checkpoint(work_dir) if train else None,
        seconds=time.time() - start)


def make_data(data_root):
    from dataset_converters.synthetic_data import (make_ade20k_shapes,
                                                   make_coco, make_imagenet)
    make_coco(osp.join(data_root, 'coco'))
    make_ade20k_shapes(
        osp.join(data_root, 'ade20k_shapes'), osp.join(data_root, 'coco'))
    spec = dict(PRETRAIN_DATA)
    return make_imagenet(osp.join(data_root, spec.pop('folder')), **spec)


def data_options(folder, data_root, key=None):
    """Point a config at ``data_root/folder`` (the configs read
    data/embedded relative to the working directory)."""
    root = osp.abspath(osp.join(data_root, folder)) + '/'
    opts = {
        f'{split}_dataloader.dataset.data_root': root
        for split in ('train', 'val', 'test')
    }
    if key == 'det':
        ann = root + 'annotations/instances_val2017.json'
        opts['val_evaluator.ann_file'] = opts['test_evaluator.ann_file'] = ann
    return opts


def pretrain(bar, args, logs):
    from model_converters.publish_ema import publish
    work = osp.join(args.work_dir, 'pretrain')
    log = osp.join(logs, 'pretrain.log')
    result = run_stage(
        bar,
        'pretrain EfficientMod-xxs (mmpretrain)',
        log,
        PRETRAIN_CONFIG,
        work,
        data_options(PRETRAIN_DATA['folder'], args.data_root),
        train=True,
        pictures=None)
    with output_to(log):
        # A fixed name (no hash suffix) that the README's examples use.
        result['published'] = publish(
            result['checkpoint'],
            osp.join(work, 'efficientmod-xxs_embedded-pretrain.pth'),
            add_hash=False)
    return result


def run_task(bar, key, args, logs, published):
    task = TASKS[key]
    pictures = osp.join(args.work_dir, 'pictures', key)
    os.makedirs(pictures, exist_ok=True)
    opts = dict(
        data_options(task['data'], args.data_root, key), **task['schedule'])
    # _delete_: replaces the embedded configs' from-scratch init_cfg.
    init = dict(
        _delete_=True,
        type='Pretrained',
        checkpoint=published,
        prefix='backbone.')
    results = {}
    for run, label in RUNS:
        options = dict(opts)
        if run == 'imagenet':
            options['model.backbone.init_cfg'] = init
        trained = run != 'untrained'
        results[run] = run_stage(
            bar,
            f'{task["name"]}: {label}',
            osp.join(logs, f'{key}_{run}.log'),
            task['config'],
            osp.join(args.work_dir, key, run),
            options,
            train=trained,
            pictures=(pictures, run, task['score_thr']) if trained else None)
    return results


def rows(results, headline_only=False):
    """``(task name, metric label, [value per run])``, in percent."""
    found = []
    for key, task in TASKS.items():
        for metric, label in task['metrics']:
            # COCO mAPs are fractions; mmseg and mmpretrain report percent.
            scale = 100 if metric.startswith('coco/') else 1
            values = [
                scale * results[key][run]['metrics'][metric] for run, _ in RUNS
            ]
            if not headline_only or metric in task['headline']:
                found.append((task['name'], label, values))
    return found


def markdown_table(results):
    head = ' | '.join(label for _, label in RUNS)
    lines = [
        f'| embedded validation set (%) | {head} |',
        '|---' * (len(RUNS) + 1) + '|'
    ]
    for name, label, values in rows(results):
        cells = ' | '.join(f'{v:.1f}' for v in values)
        lines.append(f'| {name} {label} | {cells} |')
    return '\n'.join(lines)


def write_chart(results, path):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    import numpy as np

    headline = rows(results, headline_only=True)
    fig, ax = plt.subplots(figsize=(8, 4))
    x = np.arange(len(headline))
    width = 0.8 / len(RUNS)
    for i, (_, run_label) in enumerate(RUNS):
        bars = ax.bar(
            x + (i - (len(RUNS) - 1) / 2) * width,
            [values[i] for _, _, values in headline],
            width,
            label=run_label)
        ax.bar_label(bars, fmt='%.1f', fontsize=8)
    ax.set_xticks(x, [f'{name}\n{label}' for name, label, _ in headline])
    ax.set_ylabel('% on the embedded validation set')
    ax.set_title('EfficientMod-xxs: untrained, from scratch and '
                 'ImageNet-initialised (same schedule)')
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def report(console, args, pre, results, wall, load):
    """Write the table, the chart and every figure; print the summary."""
    table = markdown_table(results)
    top1 = pre['metrics'].get('accuracy/top1')
    work = osp.relpath(args.work_dir)
    with open(osp.join(work, 'summary.md'), 'w', encoding='utf-8') as f:
        f.write(table + '\n')
    write_chart(results, osp.join(work, 'summary.png'))
    summary = dict(
        pretrain=dict(
            top1=top1, weights=pre['published'], seconds=pre['seconds']),
        tasks=results,  # per task and run: metrics, seconds, checkpoint
        wall_seconds=wall,
        load_average=load)
    with open(osp.join(work, 'summary.json'), 'w', encoding='utf-8') as f:
        json.dump(summary, f, indent=2)
    lines = [
        '', table, '', f'Pretraining: top-1 {top1:.1f}% on the embedded '
        'ImageNet validation set; EMA weights: '
        f'{osp.relpath(pre["published"])}'
    ]
    for key, task in TASKS.items():
        folder = osp.join(work, 'pictures', key)
        lines.append(f'{task["name"]} pictures (ground truth | prediction): '
                     f'{folder}/ ({len(os.listdir(folder))})')
    lines += [
        f'Table: {work}/summary.md; chart: {work}/summary.png; '
        f'figures: {work}/summary.json',
        f'Full logs of the libraries: {work}/logs/',
        f'Wall time {wall / 60:.1f} min (load average {load[0]:.1f} at the '
        f'start, {load[1]:.1f} at the end, {os.cpu_count()} cores)'
    ]
    console.print('\n'.join(lines))


def main():
    args = parse_args()
    # A bounded spin of idle OpenMP threads (docs/main_job.md), set before
    # torch starts its thread pool; the caller's own setting wins.
    if 'OMP_WAIT_POLICY' not in os.environ:
        os.environ.setdefault('GOMP_SPINCOUNT', '10000')
    # One progress bar per stage on the terminal (or, when the output is
    # not a terminal, the finished bars), on a copy of the original stdout
    # that the redirection of the libraries' output leaves alone.
    from rich.console import Console
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress,
                               TextColumn, TimeElapsedColumn)
    console = Console(file=os.fdopen(os.dup(1), 'w', buffering=1))
    logs = osp.join(args.work_dir, 'logs')
    os.makedirs(logs, exist_ok=True)
    load_start = os.getloadavg()[0]
    start = time.time()
    columns = (TextColumn('{task.description:<38}'), BarColumn(),
               MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console) as bar:
        task = bar.add_task('embedded data', total=1)
        with output_to(osp.join(logs, 'data.log')):
            make_data(args.data_root)
        bar.advance(task)
        pre = pretrain(bar, args, logs)
        results = {
            key: run_task(bar, key, args, logs, pre['published'])
            for key in TASKS
        }
    report(console, args, pre, results,
           time.time() - start, (load_start, os.getloadavg()[0]))


if __name__ == '__main__':
    main()
