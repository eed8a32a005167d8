# Semantic FPN on ADE20K with an EfficientMod-xs backbone; the recipe is
# the xxs config's, with this arch's widths and ImageNet drop-path rate.
_base_ = './fpn_efficientmod-xxs_8xb4-40k_ade20k-512x512.py'

arch = 'xs'
widths = [32, 64, 144, 288]
pretrained = 'checkpoints/efficientmod-xs_in1k.pth'

model = dict(
    backbone=dict(
        arch=arch, drop_path_rate=0.0, init_cfg=dict(checkpoint=pretrained)),
    neck=dict(in_channels=widths))
