# Mask R-CNN with EfficientMod-xxs on the embedded synthetic COCO (3 shape
# classes, 256x256 images), sized to learn visibly in a few CPU minutes.
#
# Inherits the real COCO config and changes only what the small CPU run
# needs: data, class count, image size, proposal counts, schedule. The
# backbone starts from scratch (no download); to start from ImageNet weights
# instead, pass ``--cfg-options model.backbone.init_cfg.type=Pretrained
# model.backbone.init_cfg.checkpoint=CHECKPOINT`` (a converted or released
# EfficientMod checkpoint). Make the data with
# ``python tools/dataset_converters/make_embedded_data.py``.
_base_ = './mask-rcnn_efficientmod-xxs_fpn_1x_coco.py'

data_root = 'data/embedded/coco/'
classes = ('circle', 'square', 'triangle')
metainfo = dict(
    classes=classes, palette=[(220, 20, 60), (0, 128, 255), (0, 200, 80)])
num_classes = len(classes)
img_scale = (192, 192)

model = dict(
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
    roi_head=dict(
        bbox_head=dict(num_classes=num_classes),
        mask_head=dict(num_classes=num_classes)),
    train_cfg=dict(
        rpn=dict(sampler=dict(num=128)),
        rpn_proposal=dict(nms_pre=500, max_per_img=200),
        rcnn=dict(sampler=dict(num=128))),
    test_cfg=dict(
        rpn=dict(nms_pre=500, max_per_img=100), rcnn=dict(max_per_img=20)))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                   'scale_factor')),
]
# Two cores: load data in the main process.
train_dataloader = dict(
    batch_size=2,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/instances_train2017.json',
        data_prefix=dict(img='train2017/'),
        filter_cfg=dict(filter_empty_gt=True, min_size=8),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=2,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/instances_val2017.json',
        data_prefix=dict(img='val2017/'),
        pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val2017.json')
test_evaluator = val_evaluator

# From scratch on tiny data: a higher learning rate than the recipe's 2e-4.
max_epochs = 6
optim_wrapper = dict(optimizer=dict(lr=1e-3), clip_grad=dict(max_norm=10.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=30),
    dict(
        type='CosineAnnealingLR',
        T_max=max_epochs,
        eta_min=1e-5,
        by_epoch=True,
        begin=0,
        end=max_epochs,
        convert_to_iter_based=True),
]
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
# A few CPU minutes leave the detector's scores low: draw boxes from 0.1.
default_hooks = dict(
    logger=dict(interval=5),
    checkpoint=dict(interval=1, max_keep_ckpts=2),
    visualization=dict(score_thr=0.1))
log_processor = dict(window_size=5)
