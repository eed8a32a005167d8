"""Knowledge distillation: the teacher is used, frozen and never saved."""
import copy
import os.path as osp

import pytest
import torch
import torch.nn.functional as F
from _detseg_utils import REPO
from mmengine.config import Config
from mmengine.model import ExponentialMovingAverage
from mmengine.optim import OptimWrapper
from mmengine.registry import MODELS, init_default_scope
from mmpretrain.structures import DataSample

import mmefficientmod  # noqa: F401
from mmefficientmod.checkpoint import CheckpointMismatchError
from mmefficientmod.models.classifiers import (
    KnowledgeDistillationImageClassifier, soft_distillation_loss)

CONFIGS = osp.join(REPO, 'configs', 'efficientmod')
RGB = dict(
    mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True)
BGR = dict(
    mean=[103.53, 116.28, 123.675], std=[57.375, 57.12, 58.395], to_rgb=False)
NUM_CLASSES = 10
STUDENT_BACKBONE = dict(
    type='EfficientMod', arch='xxs', out_indices=(3, ), out_type='avg_featmap')


def tiny_teacher_cfg(preprocessor=BGR):
    return dict(
        type='ImageClassifier',
        backbone=dict(
            type='ResNet', depth=18, stem_channels=8, base_channels=8),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(
            type='LinearClsHead', num_classes=NUM_CLASSES, in_channels=64),
        data_preprocessor=dict(preprocessor))


def build_student(teacher=None, mixup=False, **kwargs):
    init_default_scope('mmpretrain')
    cfg = dict(
        type='KnowledgeDistillationImageClassifier',
        backbone=STUDENT_BACKBONE,
        head=dict(
            type='LinearClsHead',
            num_classes=NUM_CLASSES,
            in_channels=256,
            loss=dict(
                type='LabelSmoothLoss', label_smooth_val=0.1,
                mode='original')),
        data_preprocessor=dict(RGB, num_classes=NUM_CLASSES),
        teacher=teacher or dict(model=tiny_teacher_cfg()),
        **kwargs)
    if mixup:
        cfg['train_cfg'] = dict(augments=[
            dict(type='Mixup', alpha=0.8),
            dict(type='CutMix', alpha=1.0)
        ])
    return MODELS.build(cfg)


def batch(n=4, size=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return dict(
        inputs=[
            torch.randint(
                0, 256, (3, size, size), generator=g, dtype=torch.uint8)
            for _ in range(n)
        ],
        data_samples=[
            DataSample().set_gt_label(i % NUM_CLASSES) for i in range(n)
        ])


def params_of(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def plain_student():
    """The plain ImageClassifier with the distillation student's layout."""
    return MODELS.build(
        dict(
            type='ImageClassifier',
            backbone=STUDENT_BACKBONE,
            head=dict(
                type='LinearClsHead', num_classes=NUM_CLASSES,
                in_channels=256)))


def test_teacher_is_outside_the_module_tree():
    model = build_student()
    teacher = model.teacher
    assert isinstance(teacher, torch.nn.Module)
    teacher_params = {id(p) for p in teacher.parameters()}
    assert teacher_params
    # not in parameters (optimizer, DDP), buffers, modules or state_dict
    assert not teacher_params & {id(p) for p in model.parameters()}
    assert all(m is not teacher for m in model.modules())
    assert not any(
        k.startswith('teacher') or '_teacher' in k for k in model.state_dict())
    # the student's state_dict is exactly a plain ImageClassifier's
    plain = plain_student()
    assert set(model.state_dict()) == set(plain.state_dict())
    plain.load_state_dict(model.state_dict(), strict=True)
    # frozen and in eval mode, whatever the student's mode
    assert all(not p.requires_grad for p in teacher.parameters())
    model.train()
    assert model.training and model.backbone.training
    assert not teacher.training and not any(m.training
                                            for m in teacher.modules())


def test_distillation_loss_is_the_kl_to_the_teacher():
    torch.manual_seed(0)
    model = build_student(distill_loss_weight=0.3, temperature=2.0)
    data = model.data_preprocessor(batch(), True)
    losses = model(**data, mode='loss')
    assert set(losses) == {'loss', 'loss_distill'}

    with torch.no_grad():
        student = model(data['inputs'], mode='tensor')
        teacher = model.teacher(
            model.teacher_inputs(data['inputs']), mode='tensor')
        t = 2.0
        expected = 0.3 * t * t * F.kl_div(
            F.log_softmax(student / t, 1),
            F.softmax(teacher / t, 1),
            reduction='batchmean')
        plain_ce = model.head.loss(
            model.extract_feat(data['inputs']), data['data_samples'])['loss']
    torch.testing.assert_close(losses['loss_distill'], expected)
    torch.testing.assert_close(losses['loss'], 0.7 * plain_ce)

    # another teacher gives another distillation loss, the same CE
    with torch.no_grad():
        model.teacher.head.fc.weight.mul_(-3.0)
        model.teacher.head.fc.bias.add_(1.0)
    changed = model(**data, mode='loss')
    assert abs(changed['loss_distill'].item() -
               losses['loss_distill'].item()) > 1e-4
    torch.testing.assert_close(changed['loss'], losses['loss'])


def test_distillation_loss_gradient_reaches_the_student_only():
    model = build_student(mixup=True)
    data = model.data_preprocessor(batch(), True)
    # Mixup/CutMix make soft targets for the head
    assert data['data_samples'][0].gt_score.shape == (NUM_CLASSES, )
    losses = model(**data, mode='loss')
    losses['loss_distill'].backward()
    assert model.head.fc.weight.grad is not None
    assert model.head.fc.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.teacher.parameters())


def test_training_does_not_change_the_teacher():
    torch.manual_seed(0)
    model = build_student(mixup=True)
    before_teacher = params_of(model.teacher)
    before_student = params_of(model)
    optim = OptimWrapper(torch.optim.AdamW(model.parameters(), lr=1e-2))
    for i in range(3):
        log = model.train_step(batch(seed=i), optim)
        assert 'loss_distill' in log
    after_teacher = params_of(model.teacher)
    assert before_teacher.keys() == after_teacher.keys()
    for k, v in before_teacher.items():
        assert torch.equal(v, after_teacher[k]), k
    assert any(not torch.equal(v,
                               model.state_dict()[k])
               for k, v in before_student.items())
    assert all(p.grad is None for p in model.teacher.parameters())
    # the teacher's BN statistics did not move either (eval mode)
    assert not model.teacher.training


def test_no_teacher_weight_in_the_saved_checkpoint(tmp_path):
    model = build_student()
    path = tmp_path / 'student.pth'
    torch.save({'state_dict': model.state_dict()}, path)
    state = torch.load(path, weights_only=True)['state_dict']
    teacher_shapes = sorted(tuple(p.shape) for p in model.teacher.parameters())
    assert not any('teacher' in k for k in state)
    # exactly the keys of the plain classifier with the same student
    plain = plain_student()
    assert sorted(state) == sorted(plain.state_dict())
    # no tensor of the teacher hides under another name either
    teacher_ptrs = {p.data_ptr() for p in model.teacher.state_dict().values()}
    assert not teacher_ptrs & {
        v.data_ptr()
        for v in model.state_dict().values()
    }
    assert teacher_shapes  # the teacher does have weights


def test_teacher_follows_the_student_and_is_shared_by_the_ema_copy():
    model = build_student()
    model.to(torch.float64)
    assert all(p.dtype == torch.float64 for p in model.teacher.parameters())
    assert model.teacher.data_preprocessor.mean.dtype == torch.float64
    model.float()
    assert all(p.dtype == torch.float32 for p in model.teacher.parameters())

    clone = copy.deepcopy(model)
    assert clone.teacher is model.teacher
    assert clone.backbone is not model.backbone
    ema = ExponentialMovingAverage(model, momentum=0.1)
    assert ema.module.teacher is model.teacher
    assert not any('teacher' in k for k in ema.state_dict())
    assert sum(1 for _ in ema.parameters()) == sum(1
                                                   for _ in model.parameters())


def test_teacher_gets_its_own_input_normalisation():
    model = build_student(teacher=dict(model=tiny_teacher_cfg(BGR)))
    raw = batch()
    student_inputs = model.data_preprocessor(raw, False)['inputs']
    teacher_inputs = model.teacher.data_preprocessor(raw, False)['inputs']
    torch.testing.assert_close(
        model.teacher_inputs(student_inputs),
        teacher_inputs,
        atol=1e-4,
        rtol=1e-5)
    # a teacher with the student's normalisation gets the inputs unchanged
    same = build_student(teacher=dict(model=tiny_teacher_cfg(RGB)))
    assert same.teacher_inputs(student_inputs) is student_inputs


def test_soft_distillation_loss_values():
    torch.manual_seed(0)
    s, t = torch.randn(5, 7), torch.randn(5, 7)
    assert soft_distillation_loss(s, s).abs() < 1e-6
    kl = (F.softmax(t, 1) *
          (F.log_softmax(t, 1) - F.log_softmax(s, 1))).sum(1).mean()
    torch.testing.assert_close(soft_distillation_loss(s, t), kl)
    kl4 = (F.softmax(t / 4, 1) *
           (F.log_softmax(t / 4, 1) - F.log_softmax(s / 4, 1))).sum(1).mean()
    torch.testing.assert_close(soft_distillation_loss(s, t, 4.0), 16 * kl4)
    torch.testing.assert_close(
        soft_distillation_loss(s, t, reduction='mean'), kl / 7)
    with pytest.raises(ValueError, match='same classes'):
        soft_distillation_loss(s, torch.randn(5, 8))


def test_teacher_checkpoint_is_loaded_by_init_weights(tmp_path):
    init_default_scope('mmpretrain')
    source = MODELS.build(tiny_teacher_cfg())
    with torch.no_grad():
        for p in source.parameters():
            p.normal_()
    path = tmp_path / 'teacher.pth'
    # an mmengine training checkpoint of the teacher
    torch.save({'state_dict': source.state_dict(), 'meta': {}}, path)
    model = build_student(
        teacher=dict(model=tiny_teacher_cfg(), checkpoint=str(path)))
    assert not torch.equal(model.teacher.head.fc.weight, source.head.fc.weight)
    model.init_weights()
    for k, v in source.state_dict().items():
        assert torch.equal(model.teacher.state_dict()[k], v), k
    assert not model.teacher.training
    assert all(not p.requires_grad for p in model.teacher.parameters())

    # an incomplete teacher checkpoint is an error, not a silent fallback
    partial = {
        k: v
        for k, v in source.state_dict().items() if not k.startswith('head.')
    }
    torch.save({'state_dict': partial}, tmp_path / 'partial.pth')
    model = build_student(
        teacher=dict(
            model=tiny_teacher_cfg(), checkpoint=str(tmp_path /
                                                     'partial.pth')))
    with pytest.raises(CheckpointMismatchError, match='teacher checkpoint'):
        model.init_weights()


def test_teacher_from_a_config_file_and_a_module():
    cfg = osp.join(CONFIGS, 'efficientmod-xxs_8xb256_in1k.py')
    model = build_student(teacher=dict(config=cfg))
    assert type(model.teacher).__name__ == 'ImageClassifier'
    assert model.teacher.backbone.arch_settings['widths'][-1] == 256
    # the config's Mixup/CutMix are not applied to the teacher
    assert model.teacher.data_preprocessor.batch_augments is None

    module = MODELS.build(tiny_teacher_cfg())
    model = build_student(teacher=module)
    assert model.teacher is module
    with pytest.raises(ValueError, match='teacher'):
        build_student(teacher=dict(checkpoint='x.pth'))


@pytest.mark.parametrize('arch', ['xxs', 'xs', 's', 's-conv'])
def test_distill_configs_are_their_plain_recipe_plus_distillation(arch):
    """The distill configs share _base_/distill.py and give their arch's
    settings: apart from the distillation entries, each is its plain
    recipe, entry for entry."""
    cfg = Config.fromfile(
        osp.join(CONFIGS, f'efficientmod-{arch}_distill_8xb256_in1k.py'))
    plain = Config.fromfile(
        osp.join(CONFIGS, f'efficientmod-{arch}_8xb256_in1k.py'))
    distill = cfg.to_dict()
    model = distill.pop('model')
    for key in ('teacher', 'distill_loss_weight', 'temperature',
                'distill_reduction'):
        model.pop(key)
    assert model.pop('type') == 'KnowledgeDistillationImageClassifier'
    expected = plain.to_dict()
    expected['model'].pop('type')
    assert model == expected.pop('model')
    assert distill.pop('custom_imports')['imports'] == expected.pop(
        'custom_imports')['imports'] + ['mmefficientmod.models.classifiers']
    assert distill == expected


@pytest.mark.parametrize('arch,width', [('xxs', 256), ('xs', 288), ('s', 312),
                                        ('s-conv', 344)])
def test_distill_configs_build(arch, width):
    """The distill configs build with their real teacher (ConvNeXt-S from
    mmpretrain's configs; its checkpoint is only loaded by init_weights) and
    save exactly the plain classifier's keys."""
    cfg = Config.fromfile(
        osp.join(CONFIGS, f'efficientmod-{arch}_distill_8xb256_in1k.py'))
    plain = Config.fromfile(
        osp.join(CONFIGS, f'efficientmod-{arch}_8xb256_in1k.py'))
    init_default_scope('mmpretrain')
    assert cfg.model.teacher.checkpoint.startswith('https://')
    if arch == 'xxs':
        model = MODELS.build(cfg.model)
        assert type(model.teacher).__name__ == 'ImageClassifier'
        assert type(model.teacher.backbone).__name__ == 'ConvNeXt'
        assert model.teacher.head.num_classes == 1000
    else:  # the same teacher; keep the test light
        cfg.model.teacher = dict(model=tiny_teacher_cfg())
        model = MODELS.build(cfg.model)
    assert isinstance(model, KnowledgeDistillationImageClassifier)
    assert model.head.in_channels == width
    assert model.distill_loss_weight == 0.5 and model.temperature == 1.0
    assert model.cls_loss_weight == 0.5
    student_keys = set(MODELS.build(plain.model).state_dict())
    assert set(model.state_dict()) == student_keys
    if arch == 'xxs':
        with torch.no_grad():
            x = torch.randn(2, 3, 64, 64)
            assert model.teacher_logits(x).shape == (2, 1000)
            assert model(x, mode='tensor').shape == (2, 1000)
