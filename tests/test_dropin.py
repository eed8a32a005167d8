"""EfficientMod drops into the libraries' own configs with nothing but
``model.backbone=dict(_delete_=True, type='EfficientMod', ...)`` and the
``in_channels`` of what follows it; then one training step (forward,
backward, optimizer step) runs and updates the backbone.

The mmseg configs keep their ``model.pretrained='open-mmlab://resnet50_v1c'``,
which the segmentor hands to the backbone: EfficientMod never loads those
ResNet weights and warns what to set instead.
"""
import warnings

import pytest
import torch
from _detseg_utils import det_sample, seg_sample
from mmengine.config import Config
from mmengine.hub import get_config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import MODELS, init_default_scope

import mmefficientmod  # noqa: F401
from mmefficientmod.engine import width_errors

# Trains models or starts tools in subprocesses.
pytestmark = pytest.mark.e2e

WIDTHS = [32, 64, 128, 256]  # EfficientMod-xxs
ALL_STAGES = (0, 1, 2, 3)

CASES = {
    # name: (library config, out_indices, overrides after the backbone).
    # RetinaNet and FCOS keep their FPN's start_level=1: stride 4 is given
    # but unused.
    'retinanet': ('mmdet::retinanet/retinanet_r50_fpn_1x_coco.py', ALL_STAGES,
                  dict(neck=dict(in_channels=WIDTHS))),
    'cascade_mask_rcnn':
    ('mmdet::cascade_rcnn/cascade-mask-rcnn_r50_fpn_1x_coco.py', ALL_STAGES,
     dict(neck=dict(in_channels=WIDTHS))),
    'fcos': ('mmdet::fcos/fcos_r50-caffe_fpn_gn-head_1x_coco.py', ALL_STAGES,
             dict(neck=dict(in_channels=WIDTHS))),
    'dino': ('mmdet::dino/dino-4scale_r50_8xb2-12e_coco.py', (1, 2, 3),
             dict(neck=dict(in_channels=WIDTHS[1:]))),
    'upernet':
    ('mmseg::upernet/upernet_r50_4xb4-80k_ade20k-512x512.py', ALL_STAGES,
     dict(
         decode_head=dict(in_channels=WIDTHS),
         auxiliary_head=dict(in_channels=WIDTHS[2]))),
    'deeplabv3plus':
    ('mmseg::deeplabv3plus/deeplabv3plus_r50-d8_4xb4-80k_ade20k-512x512.py',
     ALL_STAGES,
     dict(
         decode_head=dict(in_channels=WIDTHS[3], c1_in_channels=WIDTHS[0]),
         auxiliary_head=dict(in_channels=WIDTHS[2]))),
    'pspnet':
    ('mmseg::pspnet/pspnet_r50-d8_4xb4-80k_ade20k-512x512.py', ALL_STAGES,
     dict(
         decode_head=dict(in_channels=WIDTHS[3]),
         auxiliary_head=dict(in_channels=WIDTHS[2]))),
    'resnet50_classifier': ('mmpretrain::resnet/resnet50_8xb32_in1k.py', (3, ),
                            dict(head=dict(in_channels=WIDTHS[3]))),
}


def _config(tmp_path, base, out_indices, overrides):
    backbone = dict(
        _delete_=True,
        type='EfficientMod',
        arch='xxs',
        out_indices=out_indices)
    model = dict(backbone=backbone, **overrides)
    path = tmp_path / 'dropin.py'
    path.write_text(f'_base_ = {base!r}\n'
                    "custom_imports = dict(imports=['mmefficientmod'], "
                    'allow_failed_imports=False)\n'
                    f'model = {model!r}\n')
    return Config.fromfile(str(path))


def _det_batch(h=128, w=160):
    from mmengine.structures import InstanceData
    sample = det_sample(h, w)
    gt = InstanceData()
    gt.bboxes = torch.tensor([[10., 20., 70., 90.], [80., 30., 150., 110.]])
    gt.labels = torch.tensor([1, 5])
    from mmdet.structures.mask import BitmapMasks
    masks = torch.zeros(2, h, w, dtype=torch.uint8)
    masks[0, 20:90, 10:70] = 1
    masks[1, 30:110, 80:150] = 1
    gt.masks = BitmapMasks(masks.numpy(), h, w)
    sample.gt_instances = gt
    return dict(
        inputs=[torch.randint(0, 255, (3, h, w), dtype=torch.uint8)],
        data_samples=[sample])


def _seg_batch(h=128, w=128, n=2):
    # Two images: BN layers after global pooling need more than one value.
    from mmengine.structures import PixelData
    samples = []
    for _ in range(n):
        sample = seg_sample(h, w)
        sample.gt_sem_seg = PixelData(data=torch.randint(0, 150, (1, h, w)))
        samples.append(sample)
    return dict(
        inputs=[
            torch.randint(0, 255, (3, h, w), dtype=torch.uint8)
            for _ in range(n)
        ],
        data_samples=samples)


def _cls_batch(n=2, size=64):
    from mmpretrain.structures import DataSample
    return dict(
        inputs=[
            torch.randint(0, 255, (3, size, size), dtype=torch.uint8)
            for _ in range(n)
        ],
        data_samples=[DataSample().set_gt_label(i) for i in range(n)])


BATCHES = dict(mmdet=_det_batch, mmseg=_seg_batch, mmpretrain=_cls_batch)


@pytest.mark.parametrize('case', sorted(CASES))
def test_efficientmod_drops_into(case, tmp_path):
    base, out_indices, overrides = CASES[case]
    cfg = _config(tmp_path, base, out_indices, overrides)
    init_default_scope(cfg.default_scope)
    # The config's other parts are untouched: same heads as the library's.
    original = get_config(base)
    for key in original.model:
        if key not in ('backbone', 'neck', 'decode_head', 'auxiliary_head',
                       'head'):
            assert cfg.model[key] == original.model[key], key
    assert width_errors(cfg.model) == []
    if cfg.default_scope == 'mmseg':
        cfg.model.data_preprocessor.size = (128, 128)  # a small test batch
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        model = MODELS.build(cfg.model)
        model.init_weights()
    ignored = [
        w for w in caught
        if 'EfficientMod ignores pretrained' in str(w.message)
    ]
    assert len(ignored) == (1 if cfg.model.get('pretrained') else 0)
    if ignored:
        assert 'model.pretrained=None' in str(ignored[0].message)
    model.train()
    assert type(model.backbone).__name__ == 'EfficientMod'
    optim = build_optim_wrapper(
        model, dict(optimizer=dict(type='AdamW', lr=1e-4, weight_decay=0.05)))
    # DINO selects 900 queries from the encoder's tokens: it needs a
    # larger image than the others.
    batch = _det_batch(256, 320) if case == 'dino' else \
        BATCHES[cfg.default_scope]()
    before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    losses = model.train_step(batch, optim)
    assert losses and all(torch.isfinite(v).all() for v in losses.values())
    changed = [
        k for k, v in model.backbone.state_dict().items()
        if not torch.equal(v, before[k])
    ]
    assert changed, 'the backbone was not updated'


def _segmentor_cfg(tmp_path, pretrained):
    cfg = _config(tmp_path, CASES['upernet'][0], ALL_STAGES,
                  CASES['upernet'][2])
    cfg.model.pretrained = pretrained
    init_default_scope('mmseg')
    return cfg.model


def test_pretrained_efficientmod_checkpoint_is_loaded(tmp_path):
    from parity import load_parity_fixture

    from mmefficientmod.checkpoint import convert_released
    converted = convert_released(load_parity_fixture('xxs')['checkpoint'])
    path = tmp_path / 'efficientmod-xxs_in1k.pth'
    torch.save(converted, path)
    expected = converted['state_dict']['backbone.stem.conv.weight']
    model = MODELS.build(_segmentor_cfg(tmp_path, str(path)))
    model.init_weights()
    assert torch.equal(model.backbone.stem.conv.weight, expected)
    # The usual drop-in: weights through init_cfg, the base's ResNet
    # `pretrained` left in place (and ignored with a warning).
    cfg = _segmentor_cfg(tmp_path, 'open-mmlab://resnet50_v1c')
    cfg.backbone.init_cfg = dict(type='Pretrained', checkpoint=str(path))
    with pytest.warns(UserWarning, match='ignores pretrained'):
        model = MODELS.build(cfg)
    model.init_weights()
    assert torch.equal(model.backbone.stem.conv.weight, expected)


def test_pretrained_of_another_backbone_is_a_clear_error(tmp_path):
    from mmefficientmod.checkpoint import NotEfficientModCheckpoint
    path = tmp_path / 'resnet50.pth'
    torch.save({'state_dict': {
        'conv1.weight': torch.zeros(64, 3, 7, 7)
    }}, path)
    model = MODELS.build(_segmentor_cfg(tmp_path, str(path)))
    with pytest.raises(
            NotEfficientModCheckpoint,
            match=r'pretrained=.*model.pretrained=None'):
        model.init_weights()


def test_pretrained_and_init_cfg_together_are_refused():
    from mmefficientmod import EfficientMod
    with pytest.raises(ValueError, match='in one place'):
        EfficientMod(
            'xxs',
            pretrained='a.pth',
            init_cfg=dict(type='Pretrained', checkpoint='b.pth'))
