# EfficientMod-xxs on ImageNet-1k with the paper's recipe (ICLR 2024):
# 300 epochs, AdamW lr 4e-3 for a total batch of 2048 (8 GPUs x 256),
# weight decay 0.05 (none on norms, biases and layer scales), cosine schedule
# with 5 linear warm-up epochs, RandAugment m9-mstd0.5, Mixup 0.8, CutMix 1.0,
# label smoothing 0.1, random erasing 0.25, EMA of the weights (used for
# validation, testing and saved as the checkpoints' `state_dict`).
# With another total batch size, pass `--auto-scale-lr` to tools/train.py to
# scale the lr linearly from `auto_scale_lr.base_batch_size`.
_base_ = [
    'mmpretrain::_base_/datasets/imagenet_bs64_swin_224.py',
    'mmpretrain::_base_/schedules/imagenet_bs1024_adamw_swin.py',
    'mmpretrain::_base_/default_runtime.py',
]
# Registers EfficientMod; the second import applies the fixes this stack needs
# (mmefficientmod/stack_fixes.py: safe checkpoint loading, CPU-only
# distributed runs, a clear error for an empty dataset).
custom_imports = dict(
    imports=['mmefficientmod', 'mmefficientmod.apply_stack_fixes'],
    allow_failed_imports=False)

# model settings
model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='EfficientMod',
        arch='xxs',
        out_indices=(3, ),
        out_type='avg_featmap',
        drop_path_rate=0.0),
    neck=None,
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        in_channels=256,
        loss=dict(
            type='LabelSmoothLoss', label_smooth_val=0.1, mode='original'),
        init_cfg=dict(type='TruncNormal', layer='Linear', std=0.02)),
    # Mixup / CutMix: one of the two per batch, chosen evenly (as timm's
    # Mixup with switch_prob 0.5); the head then trains on soft targets.
    train_cfg=dict(augments=[
        dict(type='Mixup', alpha=0.8),
        dict(type='CutMix', alpha=1.0),
    ]),
)

# data settings: the base pipeline already has RandomResizedCrop 224,
# flip, RandAugment (m9, mstd 0.5) and RandomErasing (p 0.25); testing
# resizes the short edge to 256 (bicubic) and center-crops 224.
train_dataloader = dict(batch_size=256, num_workers=8)
val_dataloader = dict(batch_size=256, num_workers=8)
test_dataloader = val_dataloader
val_evaluator = dict(type='Accuracy', topk=(1, 5))
test_evaluator = val_evaluator

# schedule settings
optim_wrapper = dict(
    optimizer=dict(
        type='AdamW', lr=4e-3, weight_decay=0.05, eps=1e-8,
        betas=(0.9, 0.999)),
    paramwise_cfg=dict(
        _delete_=True,
        norm_decay_mult=0.0,
        bias_decay_mult=0.0,
        custom_keys={'.layer_scale': dict(decay_mult=0.0)}),
)

param_scheduler = [
    # 5 warm-up epochs from 1e-6 (timm's warmup_lr), updated every iteration
    dict(
        type='LinearLR',
        start_factor=1e-6 / 4e-3,
        by_epoch=True,
        begin=0,
        end=5,
        convert_to_iter_based=True),
    dict(
        type='CosineAnnealingLR',
        eta_min=1e-5,
        by_epoch=True,
        begin=5,
        end=300,
        convert_to_iter_based=True),
]

train_cfg = dict(by_epoch=True, max_epochs=300, val_interval=1)

# total batch 2048 = 8 GPUs x 256 images
auto_scale_lr = dict(base_batch_size=2048)

# runtime settings
# EMA of the weights; EMAHook swaps them in for validation/testing and saves
# them as `state_dict` in the checkpoints (the online weights go to
# `ema_state_dict`); see tools/model_converters/publish_ema.py.
custom_hooks = [
    dict(type='EMAHook', momentum=1e-4, priority='ABOVE_NORMAL'),
    # clear errors for mismatched widths or class counts (mmefficientmod)
    dict(type='EfficientModConfigCheckHook'),
    # stop a diverging run (nan/inf loss or gradient norm), never save or
    # test non-finite weights; check_train=False / check_eval=False to opt
    # out (docs/training.md)
    dict(type='NonFiniteCheckHook'),
]

# SafeCheckpointHook (mmefficientmod): checkpoints written whole (temporary
# file, fsync, rename) before older ones are deleted, a clear error on a full
# disk, and a lock on the work dir against a second live run.
default_hooks = dict(
    checkpoint=dict(
        type='SafeCheckpointHook',
        interval=1,
        max_keep_ckpts=3,
        save_best='auto'))
