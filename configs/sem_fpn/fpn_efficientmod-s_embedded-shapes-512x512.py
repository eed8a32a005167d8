# The embedded-shapes Semantic FPN at ADE20K's test size (see the xxs
# config) with an EfficientMod-s backbone: for measuring the larger model at
# the size users run (docs/deployment.md).
_base_ = './fpn_efficientmod-xxs_embedded-shapes-512x512.py'

model = dict(
    backbone=dict(arch='s'), neck=dict(in_channels=[32, 64, 144, 312]))
