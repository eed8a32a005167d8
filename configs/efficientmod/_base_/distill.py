# Soft knowledge distillation (DeiT-style: tau 1, 0.5 * label-smoothed CE +
# 0.5 * tau^2 * KL) from a frozen teacher, on the recipe of
# ../efficientmod-xxs_8xb256_in1k.py, which every arch shares. The teacher
# runs in training only, gets no gradient and is not saved in the
# checkpoints. The efficientmod-<arch>_distill_8xb256_in1k.py configs
# inherit this file and set their arch's backbone and head.
_base_ = '../efficientmod-xxs_8xb256_in1k.py'

# The distillation classifier lives apart from the backbone, so that
# `import mmefficientmod` does not load mmpretrain.
custom_imports = dict(
    imports=[
        'mmefficientmod', 'mmefficientmod.apply_stack_fixes',
        'mmefficientmod.models.classifiers'
    ],
    allow_failed_imports=False)

model = dict(
    type='KnowledgeDistillationImageClassifier',
    # Teacher: mmpretrain's ConvNeXt-S (83.2 top-1, 50M params, 8.7 GFLOPs),
    # a CNN teacher of the accuracy of the paper's RegNetY-160 (82.9), which
    # mmpretrain does not provide. Any mmpretrain classifier config works;
    # `checkpoint` may be a local path or a URL and is loaded when training
    # starts (tools/test.py never loads it). Replace both to use another one.
    teacher=dict(
        config='mmpretrain::convnext/convnext-small_32xb128_in1k.py',
        checkpoint='https://download.openmmlab.com/mmclassification/v0/'
        'convnext/convnext-small_32xb128_in1k_20221207-4ab7052c.pth'),
    distill_loss_weight=0.5,
    temperature=1.0,
    distill_reduction='batchmean')
