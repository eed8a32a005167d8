# Mask R-CNN FPN 1x on COCO with an EfficientMod-xxs backbone.
#
# Recipe of the EfficientMod paper: mmdet's Mask R-CNN FPN 1x (12 epochs, LR
# steps at epochs 8 and 11, 1333x800), AdamW lr 2e-4, weight decay 0.05,
# 8 GPUs x 4 images (batch 32). The backbone starts from ImageNet-1K weights
# (see the README: put the converted checkpoint at ``pretrained`` below, or
# point ``pretrained`` at a released upstream checkpoint, which also loads).
_base_ = 'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py'

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
# mmdet's CheckpointHook settings, saved by SafeCheckpointHook: whole files
# (temporary file, fsync, rename) before older ones are deleted, a clear
# error on a full disk, a lock on the work dir against a second live run.
default_hooks = dict(checkpoint=dict(type='SafeCheckpointHook'))

arch = 'xxs'
widths = [32, 64, 128, 256]
pretrained = 'checkpoints/efficientmod-xxs_in1k.pth'

model = dict(
    backbone=dict(
        _delete_=True,
        type='EfficientMod',
        arch=arch,
        out_indices=(0, 1, 2, 3),
        out_type='featmap',
        drop_path_rate=0.0,
        init_cfg=dict(
            type='Pretrained', checkpoint=pretrained, prefix='backbone.')),
    neck=dict(in_channels=widths))

# 8 GPUs x 4 images.
train_dataloader = dict(batch_size=4, num_workers=4)

optim_wrapper = dict(
    optimizer=dict(_delete_=True, type='AdamW', lr=2e-4, weight_decay=0.05))

# Scale the learning rate by (GPUs x images per GPU) / 32 with --auto-scale-lr.
auto_scale_lr = dict(enable=False, base_batch_size=32)
