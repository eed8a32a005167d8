# EfficientMod-xxs on ImageNet-1k with soft knowledge distillation from a
# frozen teacher (_base_/distill.py), otherwise the recipe of
# efficientmod-xxs_8xb256_in1k.py.
_base_ = './_base_/distill.py'
