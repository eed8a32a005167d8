# Semantic FPN with EfficientMod-xxs on the embedded synthetic ADE20K (4
# classes, 256x256 images, 0 = ignored "other"), sized to learn visibly in a
# few CPU minutes.
#
# Inherits the real ADE20K config and changes only what the small CPU run
# needs: data, class count, crop size, schedule, and BN instead of SyncBN in
# the head (SyncBN has no CPU implementation, so 2-process CPU training needs
# plain BN). The backbone starts from scratch; to start from ImageNet weights
# instead, pass ``--cfg-options model.backbone.init_cfg.type=Pretrained
# model.backbone.init_cfg.checkpoint=CHECKPOINT``. Make the data with
# ``python tools/dataset_converters/make_embedded_data.py``.
_base_ = './fpn_efficientmod-xxs_8xb4-40k_ade20k-512x512.py'

data_root = 'data/embedded/ade20k'
classes = ('sky', 'tree', 'building', 'road')
metainfo = dict(
    classes=classes,
    palette=[(70, 130, 180), (107, 142, 35), (70, 70, 70), (128, 64, 128)])
num_classes = len(classes)
crop_size = (192, 192)

model = dict(
    data_preprocessor=dict(size=crop_size),
    # From scratch, with the backbone's own initialisation. A dict (not None)
    # so that --cfg-options can switch it to a checkpoint, see above.
    backbone=dict(
        drop_path_rate=0.0,
        init_cfg=dict(
            _delete_=True,
            type='TruncNormal',
            layer=['Conv2d', 'Linear'],
            std=0.02,
            bias=0.0)),
    decode_head=dict(
        num_classes=num_classes, norm_cfg=dict(type='BN', requires_grad=True)))

# ``BaseSegDataset`` rather than ``ADE20KDataset``: the latter would map our
# four class names onto their positions among ADE20K's 150 classes.
dataset_type = 'BaseSegDataset'
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(
        type='RandomResize',
        scale=(256, 256),
        ratio_range=(0.75, 1.5),
        keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(256, 256), keep_ratio=True),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs'),
]
dataset_common = dict(
    type=dataset_type,
    data_root=data_root,
    metainfo=metainfo,
    img_suffix='.jpg',
    seg_map_suffix='.png',
    reduce_zero_label=True)
# Two cores: load data in the main process.
train_dataloader = dict(
    batch_size=4,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(
        **dataset_common,
        data_prefix=dict(
            img_path='images/training', seg_map_path='annotations/training'),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(
        **dataset_common,
        data_prefix=dict(
            img_path='images/validation',
            seg_map_path='annotations/validation'),
        pipeline=test_pipeline))
test_dataloader = val_dataloader

# From scratch on tiny data: a higher learning rate than the recipe's 2e-4.
max_iters = 120
warmup_iters = 10
optim_wrapper = dict(optimizer=dict(lr=1e-3))
param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=0.01,
        by_epoch=False,
        begin=0,
        end=warmup_iters),
    dict(
        type='CosineAnnealingLR',
        T_max=max_iters - warmup_iters,
        eta_min=1e-5,
        by_epoch=False,
        begin=warmup_iters,
        end=max_iters),
]
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
default_hooks = dict(
    logger=dict(interval=10), checkpoint=dict(interval=40, max_keep_ckpts=2))
log_processor = dict(window_size=10)
