# Fine-tuning EfficientMod-s from ImageNet-1k weights with layer-wise
# learning-rate decay (mmpretrain's LearningRateDecayOptimWrapperConstructor,
# with the layer ids of EfficientMod.get_layer_depth: stem 0, blocks 1..28 in
# network order, final norm and head 29; a parameter of layer i gets
# lr * layer_decay_rate ** (29 - i)).
#
# The backbone starts from ImageNet-1k weights: a converted checkpoint, e.g.
#   python tools/model_converters/efficientmod_to_mm.py \
#       efficientmod_s.pth checkpoints/efficientmod-s_in1k_mm.pth
# (the backbone also reads a released upstream file directly), or one of
# your own (`--cfg-options model.backbone.init_cfg.checkpoint=...`). The
# head is trained from scratch, so this config also serves for another dataset in the
# ImageNet folder layout: set `train_dataloader.dataset.type='CustomDataset'`
# (and val/test), `data_root`, and `model.head.num_classes` /
# `data_preprocessor.num_classes` to its number of classes.
_base_ = './efficientmod-s_8xb256_in1k.py'

model = dict(
    backbone=dict(
        drop_path_rate=0.1,
        init_cfg=dict(
            type='Pretrained',
            checkpoint='checkpoints/efficientmod-s_in1k_mm.pth',
            prefix='backbone.')))

# 8 GPUs x 64 images = 512
train_dataloader = dict(batch_size=64)
val_dataloader = dict(batch_size=64)
test_dataloader = val_dataloader

optim_wrapper = dict(
    optimizer=dict(lr=5e-4, weight_decay=0.05),
    constructor='LearningRateDecayOptimWrapperConstructor',
    paramwise_cfg=dict(
        _delete_=True,
        layer_decay_rate=0.9,
        norm_decay_mult=0.0,
        bias_decay_mult=0.0,
        custom_keys={'.layer_scale': dict(decay_mult=0.0)}))

param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=1e-3,
        by_epoch=True,
        begin=0,
        end=2,
        convert_to_iter_based=True),
    dict(
        type='CosineAnnealingLR',
        eta_min=1e-6,
        by_epoch=True,
        begin=2,
        end=30,
        convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=30, val_interval=1)
auto_scale_lr = dict(base_batch_size=512)
