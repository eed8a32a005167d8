"""Every config under configs/ builds and runs a forward pass; the COCO and
ADE20K configs carry the published recipes and the right neck widths."""
import glob
import os.path as osp

import pytest
import torch
from _detseg_utils import REPO, det_sample, seg_sample
from mmengine.config import Config
from mmengine.registry import MODELS, init_default_scope

import mmefficientmod  # noqa: F401
from mmefficientmod import EfficientMod

CONFIGS = sorted(
    osp.relpath(p, REPO) for p in glob.glob(
        osp.join(REPO, 'configs', '**', '*.py'), recursive=True))
ARCH_OF = {'xxs': 'xxs', 'xs': 'xs', 's': 's', 's-conv': 's_conv'}


def _build(cfg):
    init_default_scope(cfg.default_scope)
    model_cfg = cfg.model.copy()
    # The real configs point at checkpoints users download (ImageNet
    # backbones, distillation teachers), which init_weights() would load;
    # the forward pass here runs on PyTorch's default initialisation.
    return MODELS.build(model_cfg).eval()


def _det_batch(size=(128, 160)):
    return torch.rand(1, 3, *size), [det_sample(*size)]


def _seg_batch(size=(128, 160)):
    return torch.rand(1, 3, *size), [seg_sample(*size)]


def test_every_arch_has_its_dense_configs():
    names = {osp.basename(c) for c in CONFIGS}
    for arch in ('xxs', 'xs', 's', 's-conv'):
        assert f'mask-rcnn_efficientmod-{arch}_fpn_1x_coco.py' in names
        assert f'fpn_efficientmod-{arch}_8xb4-40k_ade20k-512x512.py' in names
    assert 'mask-rcnn_efficientmod-xxs_fpn_embedded.py' in names
    assert 'fpn_efficientmod-xxs_embedded.py' in names


@pytest.mark.parametrize('config', CONFIGS)
def test_config_builds_and_runs_forward(config):
    cfg = Config.fromfile(osp.join(REPO, config))
    assert 'mmefficientmod' in cfg.custom_imports['imports']
    assert cfg.model.backbone.type == 'EfficientMod'
    model = _build(cfg)
    with torch.no_grad():
        if cfg.default_scope == 'mmdet':
            inputs, samples = _det_batch()
            results = model(inputs, samples, mode='predict')
            pred = results[0].pred_instances
            assert pred.bboxes.shape[1] == 4
            assert pred.masks.shape[1:] == (128, 160)
        elif cfg.default_scope == 'mmseg':
            inputs, samples = _seg_batch()
            results = model(inputs, samples, mode='predict')
            seg = results[0].pred_sem_seg.data
            assert seg.shape == (1, 128, 160)
            assert int(seg.max()) < cfg.model.decode_head.num_classes
        else:
            out = model(torch.rand(1, 3, 96, 96), mode='tensor')
            logits = out[0] if isinstance(out, (list, tuple)) else out
            assert logits.shape[-1] == cfg.model.head.num_classes


DENSE = [
    c for c in CONFIGS
    if ('mask_rcnn' in c or 'sem_fpn' in c) and 'embedded' not in c
]


@pytest.mark.parametrize('config', DENSE)
def test_dense_configs_follow_the_published_recipe(config):
    cfg = Config.fromfile(osp.join(REPO, config))
    name = osp.basename(config)
    arch_key = name.split('efficientmod-')[1].split('_')[0]
    arch = ARCH_OF[arch_key]
    backbone = cfg.model.backbone
    assert backbone.arch == arch
    assert tuple(backbone.out_indices) == (0, 1, 2, 3)
    # Neck widths match the arch (upstream swapped s and s_conv for FPN).
    assert list(cfg.model.neck.in_channels) == \
        EfficientMod.arch_zoo[arch]['widths']
    init = backbone.init_cfg
    assert init.type == 'Pretrained'
    assert init.checkpoint == f'checkpoints/efficientmod-{arch_key}_in1k.pth'
    assert cfg.train_dataloader.batch_size == 4  # x 8 GPUs
    assert cfg.auto_scale_lr.base_batch_size == 32
    optimizer = cfg.optim_wrapper.optimizer
    assert optimizer.type == 'AdamW' and optimizer.lr == 2e-4
    if 'mask_rcnn' in config:
        assert optimizer.weight_decay == 0.05
        assert cfg.train_cfg.max_epochs == 12
        steps = [s for s in cfg.param_scheduler if s.type == 'MultiStepLR']
        assert steps[0].milestones == [8, 11]
        assert cfg.model.type == 'MaskRCNN'
        assert cfg.train_dataloader.dataset.type == 'CocoDataset'
    else:
        assert optimizer.weight_decay == 1e-4
        assert cfg.train_cfg.max_iters == 40000
        warmup, cosine = cfg.param_scheduler
        assert warmup.type == 'LinearLR' and warmup.end == 1000
        assert cosine.type == 'CosineAnnealingLR'
        assert (cosine.begin, cosine.end) == (1000, 40000)
        assert cfg.model.decode_head.num_classes == 150
        assert cfg.crop_size == (512, 512)
        assert cfg.train_dataloader.dataset.type == 'ADE20KDataset'


def test_pretrained_backbone_comes_in_through_init_cfg(tmp_path):
    """A checkpoint saved by a classifier (keys under ``backbone.``) is what
    the configs' ``init_cfg`` loads."""
    source = EfficientMod(arch='xxs')
    source.init_weights()
    ckpt = {
        'state_dict': {
            f'backbone.{k}': v
            for k, v in source.state_dict().items()
        }
    }
    ckpt['state_dict']['head.fc.weight'] = torch.zeros(1000, 256)
    path = tmp_path / 'efficientmod-xxs_in1k.pth'
    torch.save(ckpt, path)
    cfg = Config.fromfile(
        osp.join(
            REPO,
            'configs/mask_rcnn/mask-rcnn_efficientmod-xxs_fpn_1x_coco.py'))
    cfg.model.backbone.init_cfg.checkpoint = str(path)
    init_default_scope('mmdet')
    model = MODELS.build(cfg.model)
    model.init_weights()
    for key, value in source.state_dict().items():
        assert torch.equal(model.backbone.state_dict()[key], value), key
