# Mask R-CNN FPN 1x on COCO with an EfficientMod-xs backbone; the recipe
# is the xxs config's, with this arch's widths and ImageNet drop-path rate.
_base_ = './mask-rcnn_efficientmod-xxs_fpn_1x_coco.py'

arch = 'xs'
widths = [32, 64, 144, 288]
pretrained = 'checkpoints/efficientmod-xs_in1k.pth'

model = dict(
    backbone=dict(
        arch=arch, drop_path_rate=0.0, init_cfg=dict(checkpoint=pretrained)),
    neck=dict(in_channels=widths))
