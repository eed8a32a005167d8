"""The MMDeploy SDK (``mmdeploy_runtime``) on the folders that
``tools/deploy.py --dump-info`` writes for ONNX Runtime: its Classifier,
Segmentor and Detector against the ONNX Runtime backend model of
``mmdeploy.apis``, on the same image.

The SDK carries its own ONNX Runtime (1.15.1); it runs in a subprocess so
that it never shares a process with the onnxruntime package.

All three are expected to fail with SDK 1.3.1 (docs/deployment.md, "The
MMDeploy SDK"): its network sees an empty or uninitialised image in place
of the pre-processed one, while the ONNX Runtime 1.15.1 it embeds, given the
pre-processed image, reproduces the backend model's results on the same
graphs. They stay, marked, so that an SDK that works turns them into passes
(reported as XPASS)."""
import glob
import json
import os.path as osp
import sys

import numpy as np
import pytest
import torch
from _detseg_utils import REPO, run, write_config
from test_mmdeploy_e2e import models  # noqa: F401 (the shared fixture)
from test_mmdeploy_e2e import (DEPLOY_CONFIGS, box_iou, deploy, predict,
                               random_checkpoint)

pytestmark = pytest.mark.e2e
pytest.importorskip(
    'mmdeploy_runtime',
    reason='tools/install.sh installs mmdeploy-runtime '
    'where the platform has a wheel (CPython 3.11)')

SDK_SCRIPT = '''
import json, sys
import mmcv, mmdeploy_runtime
task, folder, image = sys.argv[1:]
runner = getattr(mmdeploy_runtime, task)(
    model_path=folder, device_name='cpu', device_id=0)
result = runner(mmcv.imread(image))
if task == 'Classifier':
    out = [[int(label), float(score)] for label, score in result]
elif task == 'Segmentor':
    out = result.tolist()
else:
    bboxes, labels, _ = result
    out = dict(bboxes=bboxes.tolist(), labels=labels.tolist())
print('SDK' + json.dumps(out))
'''


def sdk_predict(task, folder, image):
    out = run([sys.executable, '-c', SDK_SCRIPT, task,
               str(folder), image]).stdout
    return json.loads(out.split('SDK', 1)[1].splitlines()[0])


def sdk_folder(model, deploy_cfg, work_dir):
    """tools/deploy.py --dump-info, through the functions it calls."""
    from mmdeploy.backend.sdk.export_info import export2SDK
    files = deploy(model, deploy_cfg, work_dir)
    export2SDK(
        deploy_cfg,
        model['cfg'],
        str(work_dir),
        pth=model['checkpoint'],
        device='cpu')
    return files


@pytest.fixture(scope='module')
def classifier(tmp_path_factory, embedded_imagenet):
    root = tmp_path_factory.mktemp('sdk_classifier')
    cfg = write_config(
        root / 'classifier.py',
        osp.join(REPO, 'configs', 'efficientmod',
                 'efficientmod-xxs_1xb32_embedded-64px.py'),
        f'data_root = {embedded_imagenet!r}\n'
        'train_dataloader = dict(dataset=dict(data_root=data_root))\n'
        'val_dataloader = dict(dataset=dict(data_root=data_root))\n'
        'test_dataloader = val_dataloader\n')
    image = sorted(glob.glob(osp.join(embedded_imagenet, 'val', '*', '*')))[0]
    return dict(
        cfg=cfg,
        checkpoint=random_checkpoint(cfg, root / 'classifier.pth'),
        image=image,
        root=root)


SDK_FAULT = ('MMDeploy SDK 1.3.1: the network receives an empty or '
             'uninitialised image instead of the pre-processed one')


@pytest.mark.xfail(reason=SDK_FAULT + ' (the score differs)', strict=False)
def test_sdk_classifier_agrees_with_backend(classifier, tmp_path):
    deploy_cfg = osp.join(DEPLOY_CONFIGS, 'classifier_onnxruntime_dynamic.py')
    files = sdk_folder(classifier, deploy_cfg, tmp_path)
    ref = predict(classifier, deploy_cfg, files)
    top = sdk_predict('Classifier', tmp_path, classifier['image'])
    label, score = max(top, key=lambda pair: pair[1])
    assert label == int(ref.pred_label.item())
    assert np.isclose(score, float(ref.pred_score.max()), atol=1e-3)


@pytest.mark.xfail(reason=SDK_FAULT + ' (an all-background map)', strict=False)
def test_sdk_segmentor_agrees_with_backend(models, tmp_path):  # noqa: F811
    model = models['seg']
    deploy_cfg = osp.join(DEPLOY_CONFIGS, 'sem-fpn_onnxruntime_dynamic.py')
    files = sdk_folder(model, deploy_cfg, tmp_path)
    ref = predict(model, deploy_cfg, files).pred_sem_seg.data[0]
    ours = torch.tensor(sdk_predict('Segmentor', tmp_path, model['image']))
    assert ours.shape == ref.shape
    assert len(ref.unique()) > 1
    agree = (ours == ref).float().mean()
    assert agree > 0.995, agree


@pytest.mark.xfail(
    reason=SDK_FAULT + ' (no detections, or rows such as zero boxes scored '
    '1e26, varying from run to run)',
    strict=False)
def test_sdk_detector_agrees_with_backend(models, tmp_path):  # noqa: F811
    model = models['det']
    deploy_cfg = osp.join(DEPLOY_CONFIGS, 'mask-rcnn_onnxruntime_dynamic.py')
    files = sdk_folder(model, deploy_cfg, tmp_path)
    ref = predict(model, deploy_cfg, files).pred_instances
    for _ in range(3):  # the fault shows in some runs only
        ours = sdk_predict('Detector', tmp_path, model['image'])
        boxes = torch.tensor(ours['bboxes']).reshape(-1, 5)
        assert len(boxes) == len(ref)
        iou = box_iou(ref.bboxes, boxes[:, :4])
        assert (iou.max(1).values > 0.99).all()
        assert torch.allclose(
            ref.scores.sort().values, boxes[:, 4].sort().values, atol=1e-3)
