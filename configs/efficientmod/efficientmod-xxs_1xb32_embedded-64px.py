# The xxs ImageNet recipe in miniature, on the embedded synthetic
# ImageNet-layout data (circle, square, triangle, stripes; 64x64 images), for
# CPU runs: the main job (tools/main_job.py) pretrains the backbone with it on
# 4,000 images and starts its Mask R-CNN and Semantic FPN from the published
# EMA weights.
#
# Inherits the recipe (AdamW, warm-up then cosine, label smoothing, EMA) and
# changes what a few hundred CPU iterations on 64 px shapes need: data, class
# count, image size, batch, schedule, an EMA fast enough for them, and the
# augmentation: random resized crops (keeping at least half of the image, so
# that they keep the shape) and flips only. Measured with 240 iterations on
# 640 images: RandAugment, random erasing and Mixup / CutMix held the
# classifier at 53% top-1 against 63% without them; more images (4,000) and
# iterations then made the weights that help Mask R-CNN. Make the data with
#   python tools/dataset_converters/make_embedded_data.py --only imagenet
_base_ = './efficientmod-xxs_8xb256_in1k.py'

data_root = 'data/embedded/imagenet'
classes = ('circle', 'square', 'triangle', 'stripes')
img_size = 64
num_classes = len(classes)

# train_cfg=None: no Mixup / CutMix (hard labels, with label smoothing).
model = dict(head=dict(num_classes=num_classes), train_cfg=None)
data_preprocessor = dict(num_classes=num_classes)

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='RandomResizedCrop',
        scale=img_size,
        crop_ratio_range=(0.5, 1.0),
        backend='pillow',
        interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
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
# The embedded data lists its labels in meta/{train,val}.txt like ImageNet;
# CustomDataset reads them with our four class names.
dataset_common = dict(
    type='CustomDataset', data_root=data_root, metainfo=dict(classes=classes))
# Two cores: load data in the main process.
train_dataloader = dict(
    batch_size=32,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(
        _delete_=True,
        **dataset_common,
        ann_file='meta/train.txt',
        data_prefix='train',
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=32,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(
        _delete_=True,
        **dataset_common,
        ann_file='meta/val.txt',
        data_prefix='val',
        pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='Accuracy', topk=(1, ))
test_evaluator = val_evaluator

max_epochs = 6
optim_wrapper = dict(optimizer=dict(lr=7e-4))
param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=0.01,
        by_epoch=True,
        begin=0,
        end=1,
        convert_to_iter_based=True),
    dict(
        type='CosineAnnealingLR',
        eta_min=1e-5,
        by_epoch=True,
        begin=1,
        end=max_epochs,
        convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=max_epochs)
auto_scale_lr = dict(base_batch_size=32)

# An EMA that averages over the last ~50 iterations rather than ~10k.
custom_hooks = [
    dict(type='EMAHook', momentum=0.02, priority='ABOVE_NORMAL'),
    # clear errors for mismatched widths or class counts (mmefficientmod)
    dict(type='EfficientModConfigCheckHook'),
    dict(type='NonFiniteCheckHook'),
]
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=10),
    checkpoint=dict(
        type='SafeCheckpointHook',
        interval=max_epochs,
        max_keep_ckpts=1,
        save_best=None))
randomness = dict(seed=0)
