"""EfficientMod drops into other architectures of the libraries' own configs:
only the backbone and the input widths of what follows it are overridden,
then one training step (forward, backward, optimizer step) runs."""
import pytest
import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import MODELS, init_default_scope

import mmefficientmod  # noqa: F401

WIDTHS = [32, 64, 128, 256]  # EfficientMod-xxs
BACKBONE = dict(_delete_=True, type='EfficientMod', arch='xxs',
                out_indices=(0, 1, 2, 3), drop_path_rate=0.1)

CASES = {
    # name: (library config, overrides after the backbone). RetinaNet and
    # FCOS keep their FPN's start_level=1: stride 4 is given but unused.
    'retinanet': ('mmdet::retinanet/retinanet_r50_fpn_1x_coco.py',
                  dict(neck=dict(in_channels=WIDTHS))),
    'cascade_mask_rcnn': (
        'mmdet::cascade_rcnn/cascade-mask-rcnn_r50_fpn_1x_coco.py',
        dict(neck=dict(in_channels=WIDTHS))),
    'fcos': ('mmdet::fcos/fcos_r50-caffe_fpn_gn-head_1x_coco.py',
             dict(neck=dict(in_channels=WIDTHS))),
    'upernet': ('mmseg::upernet/upernet_r50_4xb4-80k_ade20k-512x512.py',
                dict(decode_head=dict(in_channels=WIDTHS),
                     auxiliary_head=dict(in_channels=WIDTHS[2]))),
    'deeplabv3plus': (
        'mmseg::deeplabv3plus/deeplabv3plus_r50-d8_4xb4-80k_ade20k-512x512.py',
        dict(decode_head=dict(in_channels=WIDTHS[3], c1_in_channels=WIDTHS[0]),
             auxiliary_head=dict(in_channels=WIDTHS[2]))),
}


def _config(tmp_path, base, overrides):
    model = dict(backbone=BACKBONE, **overrides)
    path = tmp_path / 'dropin.py'
    path.write_text(
        f'_base_ = {base!r}\n'
        "custom_imports = dict(imports=['mmefficientmod'], "
        'allow_failed_imports=False)\n'
        f'model = {model!r}\n')
    return Config.fromfile(str(path))


def _det_batch(h=128, w=160):
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData
    sample = DetDataSample(metainfo=dict(
        img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w),
        scale_factor=(1.0, 1.0), batch_input_shape=(h, w)))
    gt = InstanceData()
    gt.bboxes = torch.tensor([[10., 20., 70., 90.], [80., 30., 150., 110.]])
    gt.labels = torch.tensor([1, 5])
    from mmdet.structures.mask import BitmapMasks
    masks = torch.zeros(2, h, w, dtype=torch.uint8)
    masks[0, 20:90, 10:70] = 1
    masks[1, 30:110, 80:150] = 1
    gt.masks = BitmapMasks(masks.numpy(), h, w)
    sample.gt_instances = gt
    return dict(inputs=[torch.randint(0, 255, (3, h, w), dtype=torch.uint8)],
                data_samples=[sample])


def _seg_batch(h=128, w=128, n=2):
    # Two images: BN layers after global pooling need more than one value.
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    samples = []
    for _ in range(n):
        sample = SegDataSample(metainfo=dict(
            img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w)))
        sample.gt_sem_seg = PixelData(data=torch.randint(0, 150, (1, h, w)))
        samples.append(sample)
    return dict(inputs=[torch.randint(0, 255, (3, h, w), dtype=torch.uint8)
                        for _ in range(n)],
                data_samples=samples)


@pytest.mark.parametrize('case', sorted(CASES))
def test_efficientmod_drops_into(case, tmp_path):
    base, overrides = CASES[case]
    cfg = _config(tmp_path, base, overrides)
    init_default_scope(cfg.default_scope)
    # The config's other parts are untouched: same heads as the library's.
    original = Config.fromfile(str(_library_path(base)))
    for key in original.model:
        if key not in ('backbone', 'neck', 'decode_head', 'auxiliary_head',
                       'pretrained'):
            assert cfg.model[key] == original.model[key], key
    if cfg.model.get('pretrained'):
        cfg.model.pretrained = None  # the ResNet weights it names
    if cfg.default_scope == 'mmseg':
        cfg.model.data_preprocessor.size = (128, 128)
    model = MODELS.build(cfg.model)
    model.init_weights()
    model.train()
    assert type(model.backbone).__name__ == 'EfficientMod'
    optim = build_optim_wrapper(model, dict(
        optimizer=dict(type='AdamW', lr=1e-4, weight_decay=0.05)))
    batch = _det_batch() if cfg.default_scope == 'mmdet' else _seg_batch()
    before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    losses = model.train_step(batch, optim)
    assert losses and all(torch.isfinite(v).all() for v in losses.values())
    changed = [k for k, v in model.backbone.state_dict().items()
               if not torch.equal(v, before[k])]
    assert changed, 'the backbone was not updated'


def _library_path(name):
    """Resolve ``pkg::path`` to the file inside the installed package."""
    import importlib
    import os.path as osp
    package, rel = name.split('::')
    root = osp.dirname(importlib.import_module(package).__file__)
    return osp.join(root, '.mim', 'configs', rel)
