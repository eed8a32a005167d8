# The embedded Mask R-CNN at COCO's test size (see the xxs config) with an
# EfficientMod-s backbone: for measuring the larger model at the size users
# run (docs/deployment.md).
_base_ = './mask-rcnn_efficientmod-xxs_fpn_embedded-1333x800.py'

model = dict(
    backbone=dict(arch='s'), neck=dict(in_channels=[32, 64, 144, 312]))
