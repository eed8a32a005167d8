"""The MMDeploy SDK (``mmdeploy_runtime``) on the folders that
``tools/deploy.py --dump-info`` writes for ONNX Runtime: its Classifier,
Segmentor and Detector against the ONNX Runtime backend model of
``mmdeploy.apis``, on the same image.

The SDK runs through tools/deployment/sdk_predict.py, in its own
interpreter with the NumPy 1.26 it needs (tools/install.sh puts both in the
environment's ``mmdeploy-sdk`` folder).

The Detector is expected to fail: SDK 1.3.1 on CPU returns, in some runs,
garbage rows for Mask R-CNN (docs/deployment.md, "The MMDeploy SDK"). It
stays, marked, so that an SDK that works turns it into a pass (XPASS)."""
import glob
import json
import os.path as osp
import sys

import mmcv
import numpy as np
import pytest
import torch
from _detseg_utils import REPO, load_tool, run, write_config
from test_mmdeploy_e2e import models  # noqa: F401 (the shared fixture)
from test_mmdeploy_e2e import (DEPLOY_CONFIGS, box_iou, deploy, predict,
                               random_checkpoint)

SDK_TOOL = load_tool('deployment/sdk_predict')
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        not osp.isdir(SDK_TOOL.SDK_SITE),
        reason='tools/install.sh installs the MMDeploy SDK where the '
        'platform has a wheel (CPython 3.11 on x86-64 Linux)')
]


def sdk_predict(task, folder, image):
    out = run([sys.executable, SDK_TOOL.__file__, task,
               str(folder), image]).stdout
    return json.loads(out.strip().splitlines()[-1])


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
        'test_dataloader = val_dataloader\n'
        # The pre-processing the SDK runs. MMDeploy records ResizeEdge
        # without its backend and interpolation, so the SDK resizes
        # bilinearly with OpenCV; and it rounds a half-pixel centre-crop
        # offset up where mmcv rounds it to even, so the margin is even here
        # (72 - 64), as in the ImageNet configs (256 - 224).
        'test_pipeline = [dict(type="LoadImageFromFile"), '
        'dict(type="ResizeEdge", scale=72, edge="short", backend="cv2", '
        'interpolation="bilinear"), dict(type="CenterCrop", crop_size=64), '
        'dict(type="PackInputs")]\n'
        'val_dataloader.update(dataset=dict(pipeline=test_pipeline))\n')
    image = sorted(glob.glob(osp.join(embedded_imagenet, 'val', '*', '*')))[0]
    return dict(
        cfg=cfg,
        checkpoint=random_checkpoint(cfg, root / 'classifier.pth'),
        image=image,
        root=root)


def test_sdk_classifier_agrees_with_backend(classifier, tmp_path):
    deploy_cfg = osp.join(DEPLOY_CONFIGS, 'classifier_onnxruntime_dynamic.py')
    files = sdk_folder(classifier, deploy_cfg, tmp_path)
    ref = predict(classifier, deploy_cfg, files)
    top = sdk_predict('Classifier', tmp_path, classifier['image'])
    label, score = top['labels'][0], top['scores'][0]
    assert label == int(ref.pred_label.item())
    assert np.isclose(score, float(ref.pred_score.max()), atol=1e-3)


def test_sdk_segmentor_agrees_with_backend(models, tmp_path):  # noqa: F811
    model = models['seg']
    deploy_cfg = osp.join(DEPLOY_CONFIGS, 'sem-fpn_onnxruntime_dynamic.py')
    files = sdk_folder(model, deploy_cfg, tmp_path)
    ref = predict(model, deploy_cfg, files).pred_sem_seg.data[0]
    ours = torch.tensor(
        sdk_predict('Segmentor', tmp_path, model['image'])['map'])
    assert ours.shape == ref.shape
    assert len(ref.unique()) > 1
    agree = (ours == ref).float().mean()
    assert agree > 0.995, agree


@pytest.mark.xfail(
    reason='MMDeploy SDK 1.3.1 on CPU: some runs return garbage rows for '
    'Mask R-CNN, such as zero boxes with labels like -545401928 '
    '(open-mmlab/mmdeploy#2889, open)',
    strict=False)
def test_sdk_detector_agrees_with_backend(models, tmp_path):  # noqa: F811
    model = models['det']
    deploy_cfg = osp.join(DEPLOY_CONFIGS, 'mask-rcnn_onnxruntime_dynamic.py')
    files = sdk_folder(model, deploy_cfg, tmp_path)
    ref = predict(model, deploy_cfg, files).pred_instances
    # The SDK clips boxes to the last pixel (w - 1, h - 1), mmdet to the
    # image's edge (w, h).
    height, width = mmcv.imread(model['image']).shape[:2]
    ref_boxes = ref.bboxes.clone()
    ref_boxes[:, 0::2] = ref_boxes[:, 0::2].clamp(max=width - 1)
    ref_boxes[:, 1::2] = ref_boxes[:, 1::2].clamp(max=height - 1)
    for _ in range(3):  # the fault shows in some runs only
        ours = sdk_predict('Detector', tmp_path, model['image'])
        boxes = torch.tensor(ours['bboxes']).reshape(-1, 5)
        assert len(boxes) == len(ref)
        assert sorted(ours['labels']) == sorted(ref.labels.tolist())
        iou = box_iou(ref_boxes, boxes[:, :4])
        assert (iou.max(1).values > 0.99).all()
        assert torch.allclose(
            ref.scores.sort().values, boxes[:, 4].sort().values, atol=1e-3)
