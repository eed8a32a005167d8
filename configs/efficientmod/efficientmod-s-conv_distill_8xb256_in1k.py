# EfficientMod-s-conv on ImageNet-1k with soft knowledge distillation from a
# frozen teacher (_base_/distill.py), otherwise the recipe of
# efficientmod-s-conv_8xb256_in1k.py, whose model settings these are.
_base_ = './_base_/distill.py'

model = dict(
    backbone=dict(arch='s_conv', drop_path_rate=0.02),
    head=dict(in_channels=344))
