# The embedded Mask R-CNN tested as on COCO: images resized to 1333x800 with
# their aspect ratio kept (the 256x256 embedded images become 800x800), and
# the COCO config's proposal and detection counts. Training is the embedded
# config's; this is for measuring and deploying at the size users run
# (docs/deployment.md).
_base_ = './mask-rcnn_efficientmod-xxs_fpn_embedded.py'

model = dict(
    test_cfg=dict(
        rpn=dict(nms_pre=1000, max_per_img=1000), rcnn=dict(max_per_img=100)))
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(1333, 800), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                   'scale_factor')),
]
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
