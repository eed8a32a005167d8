# Semantic FPN on ADE20K with an EfficientMod-s-conv backbone; the recipe is
# the xxs config's, with this arch's widths and ImageNet drop-path rate.
_base_ = './fpn_efficientmod-xxs_8xb4-40k_ade20k-512x512.py'

arch = 's_conv'
widths = [40, 80, 160, 344]
pretrained = 'checkpoints/efficientmod-s-conv_in1k.pth'

model = dict(
    backbone=dict(
        arch=arch, drop_path_rate=0.02, init_cfg=dict(checkpoint=pretrained)),
    neck=dict(in_channels=widths))
