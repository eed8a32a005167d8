# The embedded-shapes Semantic FPN tested as on ADE20K: images resized to
# 2048x512 with their aspect ratio kept (the 256x256 embedded images become
# 512x512). Training is the embedded config's; this is for measuring and
# deploying at the size users run (docs/deployment.md).
_base_ = './fpn_efficientmod-xxs_embedded-shapes.py'

test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(2048, 512), keep_ratio=True),
    dict(type='LoadAnnotations', reduce_zero_label=False),
    dict(type='PackSegInputs'),
]
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
