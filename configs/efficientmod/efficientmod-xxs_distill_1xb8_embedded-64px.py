# A CPU-sized run of the distillation recipe on the embedded synthetic
# ImageNet (4 of the 1000 ImageNet labels, 64x64 images), for smoke tests and
# demos; it checks the plumbing (data, Mixup/CutMix, distillation, EMA,
# checkpoints, top-1/top-5 evaluation), not accuracy. Create the data with
#   python tools/dataset_converters/make_embedded_data.py --only imagenet
# The teacher is a small ResNet with BGR input normalisation (exercising the
# teacher input adaptation) and no checkpoint, i.e. an untrained teacher:
# point `model.teacher.checkpoint` at real teacher weights for real use.
_base_ = './efficientmod-xxs_distill_8xb256_in1k.py'

data_root = 'data/embedded/imagenet'
img_size = 64

model = dict(
    teacher=dict(
        _delete_=True,
        model=dict(
            type='ImageClassifier',
            backbone=dict(
                type='ResNet', depth=18, stem_channels=16, base_channels=16),
            neck=dict(type='GlobalAveragePooling'),
            head=dict(type='LinearClsHead', num_classes=1000, in_channels=128),
            data_preprocessor=dict(
                mean=[103.53, 116.28, 123.675],
                std=[57.375, 57.12, 58.395],
                to_rgb=False)),
        checkpoint=None))

bgr_mean = [103.53, 116.28, 123.675]
bgr_std = [57.375, 57.12, 58.395]
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='RandomResizedCrop',
        scale=img_size,
        backend='pillow',
        interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(
        type='RandAugment',
        policies='timm_increasing',
        num_policies=2,
        total_level=10,
        magnitude_level=9,
        magnitude_std=0.5,
        hparams=dict(
            pad_val=[round(x) for x in bgr_mean], interpolation='bicubic')),
    dict(
        type='RandomErasing',
        erase_prob=0.25,
        mode='rand',
        min_area_ratio=0.02,
        max_area_ratio=1 / 3,
        fill_color=bgr_mean,
        fill_std=bgr_std),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='ResizeEdge',
        scale=img_size * 8 // 7,
        edge='short',
        backend='pillow',
        interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=img_size),
    dict(type='PackInputs'),
]

train_dataloader = dict(
    batch_size=8,
    num_workers=2,
    dataset=dict(data_root=data_root, split='train', pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=8,
    num_workers=2,
    dataset=dict(data_root=data_root, split='val', pipeline=test_pipeline))
test_dataloader = val_dataloader

optim_wrapper = dict(optimizer=dict(lr=1e-3))
param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=0.1,
        by_epoch=True,
        begin=0,
        end=1,
        convert_to_iter_based=True),
    dict(
        type='CosineAnnealingLR',
        eta_min=1e-5,
        by_epoch=True,
        begin=1,
        end=2,
        convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=2, val_interval=1)
auto_scale_lr = dict(base_batch_size=8)

# a fast EMA, so that a few iterations already move it
custom_hooks = [
    dict(type='EMAHook', momentum=0.1, priority='ABOVE_NORMAL'),
    # clear errors for mismatched widths or class counts (mmefficientmod)
    dict(type='EfficientModConfigCheckHook'),
    dict(type='NonFiniteCheckHook'),
]
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=1),
    checkpoint=dict(
        type='SafeCheckpointHook',
        interval=1,
        max_keep_ckpts=2,
        save_best='auto'))
randomness = dict(seed=0)
