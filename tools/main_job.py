"""Train and evaluate EfficientMod-xxs Mask R-CNN (COCO layout) and Semantic
FPN (ADE20K layout) on the embedded synthetic data, on CPU, in a few minutes.

    python tools/main_job.py [--work-dir work_dirs/main_job]
        [--data-root data/embedded] [--tasks det seg]

For each task it
  1. generates the embedded dataset if it is not there yet,
  2. evaluates the untrained model (same config, fresh initialisation) with
     ``tools/test.py``,
  3. trains with ``tools/train.py`` (progress is printed as it runs),
  4. evaluates the trained model with ``tools/test.py`` and writes pictures of
     its predictions (ground truth left, prediction right),
and finally prints the untrained and trained metrics side by side: COCO box
and mask mAP for detection, mIoU for segmentation.
"""
import argparse
import json
import os
import os.path as osp
import subprocess
import sys
import time

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
TASKS = {
    'det': dict(
        name='Mask R-CNN, EfficientMod-xxs, embedded COCO',
        config='configs/mask_rcnn/mask-rcnn_efficientmod-xxs_fpn_embedded.py',
        data='coco',
        metrics=[('coco/bbox_mAP', 'box mAP'), ('coco/bbox_mAP_50',
                                                'box mAP@50'),
                 ('coco/segm_mAP', 'mask mAP'), ('coco/segm_mAP_50',
                                                 'mask mAP@50')]),
    'seg': dict(
        name='Semantic FPN, EfficientMod-xxs, embedded ADE20K',
        config='configs/sem_fpn/fpn_efficientmod-xxs_embedded.py',
        data='ade20k',
        metrics=[('mIoU', 'mIoU'), ('mAcc', 'mAcc'), ('aAcc', 'aAcc')]),
}


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--work-dir', default='work_dirs/main_job')
    parser.add_argument(
        '--data-root', default='data/embedded',
        help='embedded data root (the configs read data/embedded)')
    parser.add_argument(
        '--tasks', nargs='+', choices=sorted(TASKS), default=['det', 'seg'])
    return parser.parse_args()


def banner(text):
    line = '=' * max(60, len(text) + 4)
    print(f'\n{line}\n  {text}\n{line}', flush=True)


def run_tool(args, log_path):
    """Run a tool with this interpreter, streaming its output to the console
    and to ``log_path``."""
    cmd = [sys.executable, *args]
    env = dict(os.environ, PYTHONWARNINGS='ignore', PYTHONUNBUFFERED='1')
    env['PYTHONPATH'] = REPO + (os.pathsep + env['PYTHONPATH']
                                if env.get('PYTHONPATH') else '')
    print('$ ' + ' '.join(osp.relpath(a, REPO) if osp.isabs(a) else a
                          for a in args), flush=True)
    with open(log_path, 'w', encoding='utf-8') as log:
        proc = subprocess.Popen(
            cmd, cwd=REPO, env=env, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, bufsize=1)
        for line in proc.stdout:
            log.write(line)
            if _worth_showing(line):
                sys.stdout.write('  | ' + line)
                sys.stdout.flush()
        proc.wait()
    if proc.returncode != 0:
        raise SystemExit(f'{args[0]} failed (exit {proc.returncode}); see '
                         f'{log_path}')


_SHOW = ('Epoch(train)', 'Iter(train)', 'Epoch(val)', 'Iter(val)',
         'Epoch(test)', 'Iter(test)', 'Saving checkpoint', 'mAP_copypaste',
         '|', '+--', 'training ', 'METRICS', 'Error', 'error')


def _worth_showing(line):
    # pycocotools' 12-line summaries repeat the mAP_copypaste lines.
    if 'Average Recall' in line or 'Average Precision' in line:
        return False
    return any(key in line for key in _SHOW)


def ensure_data(data_root, which):
    from dataset_converters.embedded_data import make_ade20k, make_coco
    maker = make_coco if which == 'coco' else make_ade20k
    summary = maker(osp.join(data_root, which))
    state = 'generated' if summary['generated'] else 'already there'
    print(f'{which}: {summary["root"]} ({state}); classes: '
          f'{", ".join(summary["classes"])}', flush=True)


def save_untrained(config, path):
    """Checkpoint of the config's model with its initialisation, untrained
    (seeded like training, ``randomness.seed``)."""
    import torch
    from mmengine.config import Config
    from mmengine.registry import MODELS, init_default_scope
    from mmengine.runner import set_random_seed

    import mmefficientmod  # noqa: F401
    cfg = Config.fromfile(config)
    init_default_scope(cfg.default_scope)
    set_random_seed(cfg.get('randomness', {}).get('seed', 0))
    model = MODELS.build(cfg.model)
    model.init_weights()
    torch.save({'meta': dict(untrained=True), 'state_dict':
                model.state_dict()}, path)


def last_checkpoint(work_dir):
    with open(osp.join(work_dir, 'last_checkpoint'), encoding='utf-8') as f:
        return f.read().strip()


def run_task(key, args):
    task = TASKS[key]
    config = osp.join(REPO, task['config'])
    work = osp.abspath(osp.join(args.work_dir, key))
    os.makedirs(work, exist_ok=True)
    banner(task['name'])
    ensure_data(args.data_root, task['data'])
    # The configs read data/embedded relative to the repository.
    cfg_options = []
    if osp.abspath(args.data_root) != osp.join(REPO, 'data', 'embedded'):
        root = osp.abspath(osp.join(args.data_root, task['data']))
        cfg_options = _data_root_options(key, root)

    started = time.time()
    print('\n[1/3] untrained model', flush=True)
    untrained = osp.join(work, 'untrained.pth')
    save_untrained(config, untrained)
    run_tool(['tools/test.py', config, untrained, '--work-dir',
              osp.join(work, 'test_untrained'), '--metrics-file',
              osp.join(work, 'metrics_untrained.json')] + cfg_options,
             osp.join(work, 'test_untrained.log'))

    print('\n[2/3] training', flush=True)
    train_dir = osp.join(work, 'train')
    run_tool(['tools/train.py', config, '--work-dir', train_dir] +
             cfg_options, osp.join(work, 'train.log'))

    print('\n[3/3] trained model', flush=True)
    ckpt = last_checkpoint(train_dir)
    pictures = osp.join(work, 'pictures')
    run_tool(['tools/test.py', config, ckpt, '--work-dir',
              osp.join(work, 'test_trained'), '--show-dir', pictures,
              '--metrics-file', osp.join(work, 'metrics_trained.json')] +
             cfg_options, osp.join(work, 'test_trained.log'))
    elapsed = time.time() - started

    with open(osp.join(work, 'metrics_untrained.json')) as f:
        before = json.load(f)
    with open(osp.join(work, 'metrics_trained.json')) as f:
        after = json.load(f)
    n_pictures = sum(
        name.lower().endswith(('.jpg', '.jpeg', '.png'))
        for _, _, names in os.walk(pictures) for name in names)
    return dict(task=task, before=before, after=after, checkpoint=ckpt,
                pictures=pictures, n_pictures=n_pictures, seconds=elapsed)


def _data_root_options(key, root):
    if key == 'det':
        root = root.rstrip('/') + '/'
        ann = root + 'annotations/instances_val2017.json'
        opts = [f'train_dataloader.dataset.data_root={root}',
                f'val_dataloader.dataset.data_root={root}',
                f'test_dataloader.dataset.data_root={root}',
                f'val_evaluator.ann_file={ann}',
                f'test_evaluator.ann_file={ann}']
    else:
        opts = [f'{loader}.dataset.data_root={root}' for loader in
                ('train_dataloader', 'val_dataloader', 'test_dataloader')]
    return ['--cfg-options'] + opts


def fmt(key, value):
    # COCO mAPs are fractions; show them in percent like mIoU.
    return f'{100 * value:6.1f}' if key.startswith('coco/') else \
        f'{value:6.1f}'


def report(results):
    banner('Results (embedded validation sets; percent)')
    print(f'{"task":<48} {"metric":<12} {"untrained":>9} {"trained":>9}')
    for r in results:
        for key, label in r['task']['metrics']:
            print(f'{r["task"]["name"]:<48} {label:<12} '
                  f'{fmt(key, r["before"][key]):>9} '
                  f'{fmt(key, r["after"][key]):>9}')
    print()
    for r in results:
        print(f'{r["task"]["name"]}: {r["seconds"]:.0f} s; checkpoint '
              f'{osp.relpath(r["checkpoint"])}; {r["n_pictures"]} pictures '
              f'in {osp.relpath(r["pictures"])}')


def main():
    args = parse_args()
    start = time.time()
    results = [run_task(key, args) for key in args.tasks]
    report(results)
    print(f'\nTotal wall time: {time.time() - start:.0f} s')
    summary = {r['task']['name']: dict(untrained=r['before'],
                                       trained=r['after'],
                                       seconds=r['seconds'])
               for r in results}
    with open(osp.join(args.work_dir, 'summary.json'), 'w') as f:
        json.dump(summary, f, indent=2)


if __name__ == '__main__':
    main()
