# Semantic FPN with EfficientMod-xxs on the shapes of the embedded synthetic
# COCO images (background, circle, square, triangle; 256x256 images), in the
# ADE20K layout. The main job (tools/main_job.py) segments this rather than
# the embedded street scenes, whose classes differ in colour and texture:
# those reach 93-94% mIoU from scratch in 30-60 CPU iterations, too easy for
# pretrained weights to show. Here a pixel's class depends on the shape
# around it, what the embedded ImageNet pretraining teaches.
#
# Inherits the embedded config and changes only the data: classes, and the
# background kept as class 0 (``reduce_zero_label=False``). Make the data
# with ``python tools/dataset_converters/make_embedded_data.py``, which writes
# it from the embedded COCO images.
_base_ = './fpn_efficientmod-xxs_embedded.py'

data_root = 'data/embedded/ade20k_shapes'
classes = ('background', 'circle', 'square', 'triangle')
metainfo = dict(
    classes=classes,
    palette=[(0, 0, 0), (220, 20, 60), (0, 128, 255), (0, 200, 80)])
num_classes = len(classes)
crop_size = (192, 192)

model = dict(decode_head=dict(num_classes=num_classes))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=False),
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
    dict(type='LoadAnnotations', reduce_zero_label=False),
    dict(type='PackSegInputs'),
]
shapes_data = dict(
    data_root=data_root, metainfo=metainfo, reduce_zero_label=False)
train_dataloader = dict(dataset=dict(**shapes_data, pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(**shapes_data, pipeline=test_pipeline))
test_dataloader = val_dataloader
