"""Fine-tuning with layer-wise learning-rate decay through mmpretrain's
LearningRateDecayOptimWrapperConstructor and EfficientMod.get_layer_depth."""
import os.path as osp

import pytest
import torch
from _detseg_utils import REPO, load_tool
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import MODELS, init_default_scope
from parity import load_parity_fixture

import mmefficientmod  # noqa: F401
from mmefficientmod.checkpoint import convert_released

synthetic_data = load_tool('dataset_converters/synthetic_data')

CONFIGS = osp.join(REPO, 'configs', 'efficientmod')
FT_CFG = osp.join(CONFIGS, 'efficientmod-s_8xb64_in1k-ft-lrd.py')
EMBEDDED_CFG = osp.join(CONFIGS,
                        'efficientmod-xxs_distill_1xb8_embedded-64px.py')


def test_layer_wise_lr_decay_follows_the_backbone_depth():
    cfg = Config.fromfile(FT_CFG)
    assert cfg.optim_wrapper.constructor == \
        'LearningRateDecayOptimWrapperConstructor'
    rate = cfg.optim_wrapper.paramwise_cfg.layer_decay_rate
    base_lr = cfg.optim_wrapper.optimizer.lr
    assert 0 < rate < 1
    init_default_scope('mmpretrain')
    model = MODELS.build(cfg.model)
    optim = build_optim_wrapper(model, cfg.optim_wrapper)
    groups = {g['param_name']: g for g in optim.optimizer.param_groups}
    names = [n for n, _ in model.named_parameters()]
    assert set(groups) == set(names)  # one group per parameter

    num_layers = model.backbone.get_layer_depth('backbone.stem.conv.weight',
                                                'backbone.')[1]
    assert num_layers == 4 + 4 + 12 + 8 + 2  # stem, 28 blocks, norm/head
    lrs = []
    for name in names:
        group = groups[name]
        layer_id, max_id = model.backbone.get_layer_depth(name, 'backbone.')
        assert group['layer_id'] == layer_id and max_id == num_layers
        assert group['lr'] == pytest.approx(base_lr *
                                            rate**(num_layers - 1 - layer_id))
        lrs.append(group['lr'])
        if (name.endswith(('.bias', '.layer_scale')) or '.norm' in name
                or name.startswith('backbone.norm')):
            assert group['weight_decay'] == 0.0, name
        else:
            assert group['weight_decay'] == 0.05, name
    # lr never decreases along the network, from the stem to the head
    assert lrs == sorted(lrs)
    assert groups['backbone.stem.conv.weight']['lr'] == pytest.approx(
        base_lr * rate**(num_layers - 1))
    assert groups['head.fc.weight']['lr'] == pytest.approx(base_lr)
    # a downsample shares the lr of the first block after it
    assert groups['backbone.stages.2.downsample.conv.weight']['lr'] == \
        groups['backbone.stages.2.blocks.0.fc_value.weight']['lr']
    assert groups['backbone.stages.2.blocks.0.fc_value.weight']['lr'] < \
        groups['backbone.stages.2.blocks.1.fc_value.weight']['lr']


@pytest.mark.e2e
def test_finetuning_run_starts_from_the_pretrained_backbone(tmp_path):
    """A few iterations of the fine-tuning config (made xxs-sized and
    64 px) from a converted released checkpoint: the backbone is loaded, and
    the decayed lrs leave the early layers nearly untouched while the head
    trains."""
    from mmengine.runner import Runner
    fixture = load_parity_fixture('xxs')
    converted = convert_released(fixture['checkpoint'])
    ckpt_path = str(tmp_path / 'xxs_in1k.pth')
    torch.save(converted, ckpt_path)
    pretrained = {k: v.float() for k, v in converted['state_dict'].items()}
    root = str(tmp_path / 'imagenet')
    synthetic_data.make_imagenet(
        root, num_per_class_train=4, num_per_class_val=1, img_size=64)
    embedded = Config.fromfile(EMBEDDED_CFG)

    cfg = Config.fromfile(FT_CFG)
    cfg.model.backbone.arch = 'xxs'
    cfg.model.backbone.init_cfg.checkpoint = ckpt_path
    cfg.model.head.in_channels = 256
    cfg.train_dataloader.batch_size = 8
    cfg.train_dataloader.num_workers = 0
    cfg.train_dataloader.dataset.data_root = root
    cfg.train_dataloader.dataset.pipeline = embedded.train_pipeline
    cfg.val_dataloader = cfg.val_cfg = cfg.val_evaluator = None
    cfg.test_dataloader = cfg.test_cfg = cfg.test_evaluator = None
    # no warm-up, so that the lrs are the decayed base lrs
    cfg.param_scheduler = [dict(type='ConstantLR', factor=1.0)]
    cfg.optim_wrapper.optimizer.lr = 1e-2
    cfg.train_cfg = dict(by_epoch=True, max_epochs=1)
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=1)
    cfg.work_dir = str(tmp_path / 'work')
    cfg.randomness = dict(seed=0)
    runner = Runner.from_cfg(cfg)
    runner.train()

    model = runner.model
    state = model.state_dict()
    stem = state['backbone.stem.conv.weight']
    # the stem's lr is 1e-2 * 0.9**(layers - 1); four AdamW steps move a
    # weight by at most ~4 lr, so it stayed at the pretrained value
    lr_stem = 1e-2 * 0.9**(
        model.backbone.get_layer_depth('backbone.stem.conv.weight',
                                       'backbone.')[1] - 1)
    assert (stem - pretrained['backbone.stem.conv.weight']).abs().max() \
        <= 4 * lr_stem * 1.01
    assert not torch.equal(stem, pretrained['backbone.stem.conv.weight'])
    # the head trained with the full lr, so it moved the most
    head_move = (state['head.fc.weight'] -
                 pretrained['head.fc.weight']).abs().max()
    assert head_move > 4 * lr_stem
    lrs = [g['lr'] for g in runner.optim_wrapper.optimizer.param_groups]
    assert max(lrs) == pytest.approx(1e-2)
    assert min(lrs) == pytest.approx(lr_stem)
