_base_ = [
    'mmpretrain::_base_/datasets/imagenet_bs64_swin_224.py',
    'mmpretrain::_base_/schedules/imagenet_bs1024_adamw_swin.py',
    'mmpretrain::_base_/default_runtime.py',
]
custom_imports = dict(imports=['mmefficientmod'], allow_failed_imports=False)

model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='EfficientMod',
        arch='xxs',
        out_indices=(3, ),
        out_type='avg_featmap',
        drop_path_rate=0.0),
    neck=None,
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        in_channels=256,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0)))
