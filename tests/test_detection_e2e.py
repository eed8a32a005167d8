"""Mask R-CNN + EfficientMod-xxs end to end on the embedded COCO, through
tools/train.py and tools/test.py: train, checkpoint, resume, test with COCO
bbox and segm mAP, --out and --show-dir, and mmdet's own tools.
"""
import json
import os.path as osp
import pickle
import sys

import pytest
from _detseg_utils import files, run, tiny_det_config, tool, write_config

from mmefficientmod.checkpoint.safe_load import load_checkpoint

# Trains models or starts tools in subprocesses.
pytestmark = pytest.mark.e2e


@pytest.fixture(scope='module')
def det(tmp_path_factory, tiny_data):
    root = tmp_path_factory.mktemp('det')
    coco, _ = tiny_data
    body = '''
train_cfg = dict(max_epochs=2, val_interval=2)
default_hooks = dict(logger=dict(interval=1),
                     checkpoint=dict(interval=1, max_keep_ckpts=3))
'''
    cfg = write_config(root / 'det_cfg.py', tiny_det_config(str(root), coco),
                       body)
    work = root / 'work'
    log = tool('train.py', cfg, '--work-dir', work).stdout
    return dict(root=root, cfg=cfg, work=work, log=log, coco=coco)


def test_train_logs_progress_validates_and_checkpoints(det):
    log = det['log']
    # 8 images, one without objects (dropped by filter_empty_gt): 4 steps.
    assert 'Epoch(train) [1][4/4]' in log and 'Epoch(train) [2][4/4]' in log
    for key in ('loss_rpn_cls', 'loss_cls', 'loss_bbox', 'loss_mask'):
        assert key in log
    assert 'coco/bbox_mAP' in log and 'coco/segm_mAP' in log
    for epoch in (1, 2):
        assert osp.isfile(det['work'] / f'epoch_{epoch}.pth')


def test_resume_continues_from_last_checkpoint(det):
    before = load_checkpoint(det['work'] / 'epoch_2.pth')
    log = tool('train.py', det['cfg'], '--work-dir', det['work'], '--resume',
               '--cfg-options', 'train_cfg.max_epochs=3',
               'train_cfg.val_interval=100').stdout
    assert 'epoch_2.pth' in log and 'resumed epoch: 2' in log
    assert 'Epoch(train) [3][4/4]' in log
    assert 'Epoch(train) [1]' not in log
    after = load_checkpoint(det['work'] / 'epoch_3.pth')
    assert after['meta']['epoch'] == 3
    assert after['meta']['iter'] == before['meta']['iter'] + 4
    # Optimizer moments were carried over, not restarted.
    steps = {float(s['step']) for s in after['optimizer']['state'].values()}
    assert steps == {float(after['meta']['iter'])}

    # An explicit checkpoint works too.
    log = tool('train.py', det['cfg'], '--work-dir', det['root'] / 'work2',
               '--resume', det['work'] / 'epoch_1.pth', '--cfg-options',
               'train_cfg.max_epochs=2', 'train_cfg.val_interval=100').stdout
    assert 'resumed epoch: 1' in log and 'Epoch(train) [2][4/4]' in log


def test_finetune_with_another_num_classes_through_load_from(det):
    """A detector of 5 classes fine-tuned to the config's 3: the class
    layers get other shapes, the run says so in one line and trains, with
    the backbone and the rest loaded."""
    import torch

    from mmefficientmod.models.from_config import build_model_from_config
    five = build_model_from_config(
        det['cfg'], {
            'model.roi_head.bbox_head.num_classes': 5,
            'model.roi_head.mask_head.num_classes': 5
        },
        init_weights=False)
    source = det['root'] / 'five_classes.pth'
    torch.save({'state_dict': five.state_dict(), 'meta': {}}, source)
    work = det['root'] / 'work_finetune'
    log = tool('train.py', det['cfg'], '--work-dir', work, '--cfg-options',
               f'load_from={source}', 'train_cfg.max_epochs=1',
               'train_cfg.val_interval=100').stdout
    lines = [
        line for line in log.splitlines()
        if 'Training from the checkpoint' in line
    ]
    assert len(lines) == 1, log[-3000:]
    assert 'have other shapes (e.g. roi_head.bbox_head.fc_cls.weight' \
        in lines[0]
    assert 'Epoch(train) [1][4/4]' in log
    assert osp.isfile(work / 'epoch_1.pth')


def test_test_tool_coco_metrics_dump_and_pictures(det):
    pkl = det['root'] / 'results.pkl'
    vis = det['root'] / 'vis'
    metrics_file = det['root'] / 'metrics.json'
    tool('test.py', det['cfg'], det['work'] / 'epoch_2.pth', '--work-dir',
         det['root'] / 'test', '--out', pkl, '--show-dir', vis,
         '--metrics-file', metrics_file)
    metrics = json.loads(metrics_file.read_text())
    for key in ('coco/bbox_mAP', 'coco/bbox_mAP_50', 'coco/segm_mAP',
                'coco/segm_mAP_50'):
        assert -1 <= metrics[key] <= 1, key
    with open(pkl, 'rb') as f:
        results = pickle.load(f)
    assert len(results) == 4
    pred = results[0]['pred_instances']
    assert {'bboxes', 'scores', 'labels', 'masks'} <= set(pred)
    assert len(files(str(vis / '*.jpg'))) == 4


def test_mmdet_own_tools_run_our_config(det):
    import mmdet
    tools_dir = osp.join(osp.dirname(mmdet.__file__), '.mim', 'tools')
    if not osp.isfile(osp.join(tools_dir, 'test.py')):
        pytest.skip('this mmdet install ships no tools/')
    log = run([
        sys.executable,
        osp.join(tools_dir, 'test.py'), det['cfg'],
        str(det['work'] / 'epoch_2.pth'), '--work-dir',
        str(det['root'] / 'mmdet_test')
    ]).stdout
    assert 'coco/segm_mAP' in log
    log = run([
        sys.executable,
        osp.join(tools_dir, 'train.py'), det['cfg'], '--work-dir',
        str(det['root'] / 'mmdet_train'), '--cfg-options',
        'train_cfg.max_epochs=1', 'train_cfg.val_interval=100'
    ]).stdout
    assert 'Epoch(train) [1][4/4]' in log
    assert osp.isfile(det['root'] / 'mmdet_train' / 'epoch_1.pth')


def test_readme_python_examples_detection(det):
    """The README's "Use it from Python" detection snippets, on this run's
    checkpoint: DetInferencer, init_detector / inference_detector, and
    mmdet's browse_dataset through ``mim run``."""
    import glob

    from _detseg_utils import REPO
    from mmdet.apis import DetInferencer, inference_detector, init_detector
    checkpoint = str(det['work'] / 'epoch_2.pth')
    image = sorted(glob.glob(osp.join(det['coco'], 'val2017', '*.jpg')))[0]
    out_dir = det['root'] / 'demo_det'
    inferencer = DetInferencer(det['cfg'], weights=checkpoint, device='cpu')
    result = inferencer(
        image, out_dir=str(out_dir), pred_score_thr=0.0, no_save_pred=False)
    assert len(result['predictions']) == 1
    assert glob.glob(str(out_dir / 'vis' / '*.jpg'))
    assert glob.glob(str(out_dir / 'preds' / '*.json'))

    model = init_detector(det['cfg'], checkpoint, device='cpu')
    pred = inference_detector(model, image).pred_instances
    assert pred.bboxes.shape[1] == 4
    classes = model.dataset_meta['classes']
    assert all(0 <= int(label) < len(classes) for label in pred.labels)

    mim = osp.join(osp.dirname(sys.executable), 'mim')
    browse = det['root'] / 'browse'
    run([
        mim, 'run', 'mmdet', 'browse_dataset', det['cfg'], '--output-dir',
        str(browse), '--not-show'
    ],
        cwd=REPO)
    # one picture per training image (the empty one is filtered out)
    assert len(glob.glob(str(browse / '*.jpg'))) == 7
