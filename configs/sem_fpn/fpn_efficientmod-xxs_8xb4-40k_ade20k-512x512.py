# Semantic FPN on ADE20K (512x512 crops) with an EfficientMod-xxs backbone.
#
# Recipe of the EfficientMod paper: 40k iterations, 8 GPUs x 4 images (batch
# 32), AdamW lr 2e-4, weight decay 1e-4, cosine schedule after 1000 linear
# warm-up iterations. The backbone starts from ImageNet-1K weights (see the
# README: put the converted checkpoint at ``pretrained`` below, or point
# ``pretrained`` at a released upstream checkpoint, which also loads).
_base_ = [
    'mmseg::_base_/models/fpn_r50.py',
    'mmseg::_base_/datasets/ade20k.py',
    'mmseg::_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_40k.py',
]

# Registers EfficientMod; the second import applies the fixes this stack needs
# (mmefficientmod/stack_fixes.py: safe checkpoint loading, CPU-only
# distributed runs, a clear error for an empty dataset).
custom_imports = dict(
    imports=['mmefficientmod', 'mmefficientmod.apply_stack_fixes'],
    allow_failed_imports=False)
# Clear errors for mismatched widths or class counts, in every tool; a
# diverging run stops (nan/inf loss or gradient norm) and non-finite weights
# are neither saved nor tested (check_train / check_eval=False to opt out).
custom_hooks = [
    dict(type='EfficientModConfigCheckHook'),
    dict(type='NonFiniteCheckHook'),
]
# mmseg's CheckpointHook settings, saved by SafeCheckpointHook: whole files
# (temporary file, fsync, rename) before older ones are deleted, a clear
# error on a full disk, a lock on the work dir against a second live run.
default_hooks = dict(checkpoint=dict(type='SafeCheckpointHook'))

arch = 'xxs'
widths = [32, 64, 128, 256]
pretrained = 'checkpoints/efficientmod-xxs_in1k.pth'

crop_size = (512, 512)
data_preprocessor = dict(size=crop_size)
model = dict(
    data_preprocessor=data_preprocessor,
    # The base's ResNet weights; EfficientMod takes its own via init_cfg.
    pretrained=None,
    backbone=dict(
        _delete_=True,
        type='EfficientMod',
        arch=arch,
        out_indices=(0, 1, 2, 3),
        out_type='featmap',
        drop_path_rate=0.0,
        init_cfg=dict(
            type='Pretrained', checkpoint=pretrained, prefix='backbone.')),
    neck=dict(in_channels=widths),
    decode_head=dict(num_classes=150))

# 8 GPUs x 4 images.
train_dataloader = dict(batch_size=4)

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=2e-4, weight_decay=1e-4),
    clip_grad=None)

max_iters = 40000
warmup_iters = 1000
param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=1e-6,
        by_epoch=False,
        begin=0,
        end=warmup_iters),
    dict(
        type='CosineAnnealingLR',
        T_max=max_iters - warmup_iters,
        eta_min=0.0,
        by_epoch=False,
        begin=warmup_iters,
        end=max_iters),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters)

auto_scale_lr = dict(enable=False, base_batch_size=32)
