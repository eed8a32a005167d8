"""The embedded Mask R-CNN and Semantic FPN deployed with MMDeploy to ONNX
Runtime and OpenVINO (this project's deploy configs in
tools/deployment/configs), and the backend model's predictions compared
with the PyTorch model's on a validation image.

The conversion goes through ``mmdeploy.apis`` (``torch2onnx``,
``to_backend``, ``build_task_processor``), the functions that MMDeploy's
``tools/deploy.py`` and ``tools/test.py`` call: those tools are not in
mmdeploy's wheel. With ``MMDEPLOY_DIR`` naming a checkout of MMDeploy's
repository (tag v1.3.1), the stock tools themselves run too
(``test_stock_tools_deploy_and_test``)."""
import glob
import os
import os.path as osp
import sys

import numpy as np
import pytest
import torch
from _detseg_utils import (REPO, run, tiny_det_config, tiny_seg_config, tool,
                           write_config)

pytestmark = pytest.mark.e2e
pytest.importorskip('mmdeploy', reason='tools/install.sh installs mmdeploy')

DEPLOY_CONFIGS = osp.join(REPO, 'tools', 'deployment', 'configs')
BACKENDS = {
    'det': {
        'onnxruntime': 'mask-rcnn_onnxruntime_dynamic.py',
        'openvino': 'mask-rcnn_openvino_192x192.py',
    },
    'seg': {
        'onnxruntime': 'sem-fpn_onnxruntime_dynamic.py',
        'openvino': 'sem-fpn_openvino_256x256.py',
    },
}


def random_checkpoint(model_cfg, path):
    """The model of ``model_cfg`` with its own (seeded) initialisation."""
    from mmengine.config import Config
    from mmengine.registry import MODELS, init_default_scope
    cfg = Config.fromfile(model_cfg)
    init_default_scope(cfg.default_scope)
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    torch.save({'state_dict': model.state_dict()}, path)
    return str(path)


@pytest.fixture(scope='module')
def models(tmp_path_factory, tiny_data):
    root = tmp_path_factory.mktemp('mmdeploy')
    coco, ade = tiny_data
    # Every detection of the untrained model, so that there are many to
    # compare (its class scores are all near 1/4).
    det_cfg = write_config(
        root / 'det.py', tiny_det_config(str(root), coco),
        'model = dict(test_cfg=dict(rcnn=dict(score_thr=0.0)))')
    seg_cfg = tiny_seg_config(str(root), ade)
    out = {}
    for task, cfg, images in (('det', det_cfg, osp.join(coco, 'val2017')),
                              ('seg', seg_cfg,
                               osp.join(ade, 'images', 'validation'))):
        out[task] = dict(
            cfg=cfg,
            checkpoint=random_checkpoint(cfg, root / f'{task}.pth'),
            image=sorted(glob.glob(osp.join(images, '*.jpg')))[0],
            root=root)
    return out


def deploy(model, deploy_cfg, work_dir):
    """What tools/deploy.py does, through mmdeploy.apis."""
    from mmdeploy.apis import torch2onnx
    from mmdeploy.apis.utils import to_backend
    from mmdeploy.utils import get_backend, load_config
    torch2onnx(
        model['image'],
        str(work_dir),
        'end2end.onnx',
        deploy_cfg,
        model['cfg'],
        model['checkpoint'],
        device='cpu')
    files = [osp.join(work_dir, 'end2end.onnx')]
    backend = get_backend(load_config(deploy_cfg)[0]).value
    if backend != 'onnxruntime':
        files = to_backend(
            backend,
            files,
            work_dir=str(work_dir),
            deploy_cfg=load_config(deploy_cfg)[0])
    return files


def predict(model, deploy_cfg, files=None):
    """The prediction of the backend model (``files``) or, without, of the
    PyTorch model, for the model's image, as tools/test.py makes it."""
    from mmdeploy.apis.utils import build_task_processor
    from mmdeploy.utils import load_config
    deploy_cfg, model_cfg = load_config(deploy_cfg, model['cfg'])
    task = build_task_processor(model_cfg, deploy_cfg, 'cpu')
    if files is None:
        net = task.build_pytorch_model(model['checkpoint'])
    else:
        net = task.build_backend_model(files)
    inputs, _ = task.create_input(model['image'])
    with torch.no_grad():
        return net.test_step(inputs)[0]


def box_iou(a, b):
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area = (a[:, 2:] - a[:, :2]).prod(-1)
    area_b = (b[:, 2:] - b[:, :2]).prod(-1)
    return inter / (area[:, None] + area_b[None] - inter)


@pytest.mark.parametrize('backend', ['onnxruntime', 'openvino'])
def test_mask_rcnn_backend_predicts_like_pytorch(models, backend, tmp_path):
    if backend == 'openvino':
        pytest.importorskip('openvino')
    model = models['det']
    deploy_cfg = osp.join(DEPLOY_CONFIGS, BACKENDS['det'][backend])
    files = deploy(model, deploy_cfg, tmp_path)
    ours = predict(model, deploy_cfg, files).pred_instances
    ref = predict(model, deploy_cfg).pred_instances
    assert len(ref) >= 5  # the comparison below has detections to compare
    # Same detections: each PyTorch one has a backend one of its class with
    # the same box and score (ordering may differ among near-equal scores).
    iou = box_iou(ref.bboxes, ours.bboxes)
    same = ((ref.labels[:, None] == ours.labels[None])
            & ((ref.scores[:, None] - ours.scores[None]).abs() < 1e-3))
    iou = torch.where(same, iou, torch.zeros_like(iou))
    best_iou, match = iou.max(1)
    assert (best_iou > 0.99).float().mean() >= 0.9, best_iou
    # Their masks, pasted into the image, cover the same pixels.
    matched = best_iou > 0.99
    ref_masks = ref.masks[matched].bool()
    our_masks = ours.masks[match[matched]].bool()
    agree = (ref_masks == our_masks).float().mean()
    assert agree > 0.99, agree


@pytest.mark.parametrize('backend', ['onnxruntime', 'openvino'])
def test_semantic_fpn_backend_predicts_like_pytorch(models, backend, tmp_path):
    if backend == 'openvino':
        pytest.importorskip('openvino')
    model = models['seg']
    deploy_cfg = osp.join(DEPLOY_CONFIGS, BACKENDS['seg'][backend])
    files = deploy(model, deploy_cfg, tmp_path)
    ours = predict(model, deploy_cfg, files).pred_sem_seg.data
    ref = predict(model, deploy_cfg).pred_sem_seg.data
    assert ours.shape == ref.shape
    assert len(ref.unique()) > 1  # an untrained model that still varies
    agree = (ours.to(ref.dtype) == ref).float().mean()
    assert agree > 0.995, agree


def int8_files(model, deploy_cfg, tmp_path):
    """The float32 OpenVINO model and the int8 one that
    tools/deployment/openvino_precision.py makes of it, calibrated on the
    model config's training images."""
    fp32 = deploy(model, deploy_cfg, tmp_path / 'fp32')
    tool('deployment/openvino_precision.py', deploy_cfg, model['cfg'], fp32[0],
         tmp_path / 'int8', '--precision', 'int8')
    return fp32, [str(tmp_path / 'int8' / 'end2end.xml')]


def test_semantic_fpn_int8_predicts_like_float32(models, tmp_path):
    pytest.importorskip('nncf')
    model = models['seg']
    deploy_cfg = osp.join(DEPLOY_CONFIGS, BACKENDS['seg']['openvino'])
    fp32, int8 = int8_files(model, deploy_cfg, tmp_path)
    ref = predict(model, deploy_cfg, fp32).pred_sem_seg.data
    ours = predict(model, deploy_cfg, int8).pred_sem_seg.data
    assert len(ref.unique()) > 1  # an untrained model that still varies
    agree = (ours == ref).float().mean()
    assert agree > 0.95, agree


def test_mask_rcnn_int8_predicts_like_float32(models, tmp_path):
    pytest.importorskip('nncf')
    model = models['det']
    deploy_cfg = osp.join(DEPLOY_CONFIGS, BACKENDS['det']['openvino'])
    fp32, int8 = int8_files(model, deploy_cfg, tmp_path)
    ref = predict(model, deploy_cfg, fp32).pred_instances
    ours = predict(model, deploy_cfg, int8).pred_instances
    # Most of float32's 20 best detections are found again, same class, same
    # box (an untrained model's scores are close together, so int8 may
    # reorder some of them).
    top = ref[ref.scores.argsort(descending=True)[:20]]
    iou = box_iou(top.bboxes, ours.bboxes)
    iou = torch.where(top.labels[:, None] == ours.labels[None], iou,
                      torch.zeros_like(iou))
    assert (iou.max(1).values > 0.9).float().mean() >= 0.6, iou.max(1)


@pytest.mark.skipif(
    not os.environ.get('MMDEPLOY_DIR'),
    reason='set MMDEPLOY_DIR to a checkout of MMDeploy (tag v1.3.1) to run '
    'its own tools/deploy.py and tools/test.py')
def test_stock_tools_deploy_and_test(models, tmp_path):
    """MMDeploy's own tools/deploy.py and tools/test.py, unchanged, on the
    tiny Semantic FPN with OpenVINO; its tools/test.py gives the mIoU of
    the PyTorch model (this project's tools/test.py)."""
    pytest.importorskip('openvino')
    tools = osp.join(os.environ['MMDEPLOY_DIR'], 'tools')
    model = models['seg']
    deploy_cfg = osp.join(DEPLOY_CONFIGS, BACKENDS['seg']['openvino'])
    run([
        sys.executable,
        osp.join(tools, 'deploy.py'), deploy_cfg, model['cfg'],
        model['checkpoint'], model['image'], '--work-dir',
        str(tmp_path), '--device', 'cpu'
    ])
    mmdeploy_test = run([
        sys.executable,
        osp.join(tools, 'test.py'), deploy_cfg, model['cfg'], '--model',
        str(tmp_path / 'end2end.xml'), '--device', 'cpu', '--work-dir',
        str(tmp_path / 'test_openvino')
    ]).stdout
    # The PyTorch model's metrics, from this project's tools/test.py.
    pytorch_test = tool('test.py', model['cfg'], model['checkpoint'],
                        '--work-dir', tmp_path / 'test_pytorch').stdout
    miou = [
        float([x for x in log.splitlines()
               if 'mIoU:' in x][-1].split('mIoU:')[1].split()[0])
        for log in (mmdeploy_test, pytorch_test)
    ]
    assert np.isclose(*miou, atol=0.5), miou
