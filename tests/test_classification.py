"""ImageNet classification: the paper's recipe in the configs, an end-to-end
CPU run (distillation + EMA, checkpoint, tools/test.py), EMA export, and a
converted released checkpoint through tools/test.py."""
import os
import os.path as osp
import pickle
import re
import subprocess
import sys

import pytest
import torch
from _detseg_utils import REPO, load_tool
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.optim import build_optim_wrapper
from mmengine.registry import MODELS, init_default_scope
from parity import load_parity_fixture

import mmefficientmod  # noqa: F401
from mmefficientmod.checkpoint import convert_released, strip_prefix
from mmefficientmod.checkpoint.safe_load import load_checkpoint

synthetic_data = load_tool('dataset_converters/synthetic_data')

CONFIGS = osp.join(REPO, 'configs', 'efficientmod')
EMBEDDED_CFG = osp.join(CONFIGS,
                        'efficientmod-xxs_distill_1xb8_embedded-64px.py')
ARCHS = {  # config name: (arch, drop path, head width)
    'xxs': ('xxs', 0.0, 256),
    'xs': ('xs', 0.0, 288),
    's': ('s', 0.02, 312),
    's-conv': ('s_conv', 0.02, 344),
}
KEY_WARNING = re.compile(r'missing key|unexpected key|size mismatch',
                         re.IGNORECASE)


def config_path(name, distill=False):
    suffix = '_distill' if distill else ''
    return osp.join(CONFIGS, f'efficientmod-{name}{suffix}_8xb256_in1k.py')


def run_tool(args, timeout=600):
    """Run a tool in a fresh interpreter from the repo root; return its
    combined output, failing the test with it on a non-zero exit."""
    env = dict(os.environ, PYTHONWARNINGS='ignore', OMP_NUM_THREADS='2')
    proc = subprocess.run(
        [sys.executable] + list(args),
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-6000:]
    return proc.stdout


def data_options(root):
    opts = []
    for split in ('train', 'val', 'test'):
        opts += [
            f'{split}_dataloader.dataset.data_root={root}',
            f'{split}_dataloader.num_workers=0'
        ]
    return opts


# ---------------------------------------------------------------------------
# The recipe
# ---------------------------------------------------------------------------
@pytest.mark.parametrize('distill', [False, True])
@pytest.mark.parametrize('name', list(ARCHS))
def test_configs_hold_the_papers_recipe(name, distill):
    cfg = Config.fromfile(config_path(name, distill))
    arch, drop_path, width = ARCHS[name]
    model = cfg.model
    assert model.backbone.type == 'EfficientMod'
    assert model.backbone.arch == arch
    assert model.backbone.drop_path_rate == drop_path
    assert model.backbone.out_type == 'avg_featmap'
    assert model.head.in_channels == width and model.head.num_classes == 1000
    assert model.head.loss == dict(
        type='LabelSmoothLoss', label_smooth_val=0.1, mode='original')
    assert model.train_cfg.augments == [
        dict(type='Mixup', alpha=0.8),
        dict(type='CutMix', alpha=1.0)
    ]
    if distill:
        assert model.type == 'KnowledgeDistillationImageClassifier'
        assert model.temperature == 1.0 and model.distill_loss_weight == 0.5
        assert model.teacher.config.startswith('mmpretrain::')
    else:
        assert model.type == 'ImageClassifier'

    # data: 8 x 256 images, RandAugment m9-mstd0.5, random erasing 0.25
    assert cfg.train_dataloader.batch_size == 256
    assert cfg.auto_scale_lr == dict(base_batch_size=2048)
    pipeline = {t.type: t for t in cfg.train_dataloader.dataset.pipeline}
    assert pipeline['RandomResizedCrop'].scale == 224
    assert pipeline['RandAugment'].magnitude_level == 9
    assert pipeline['RandAugment'].magnitude_std == 0.5
    assert pipeline['RandAugment'].num_policies == 2
    assert pipeline['RandomErasing'].erase_prob == 0.25
    test_pipeline = {t.type: t for t in cfg.test_dataloader.dataset.pipeline}
    assert test_pipeline['ResizeEdge'].scale == 256
    assert test_pipeline['CenterCrop'].crop_size == 224

    # AdamW 4e-3, wd 0.05 (none on norms, biases, layer scales)
    optim = cfg.optim_wrapper
    assert optim.optimizer.type == 'AdamW' and optim.optimizer.lr == 4e-3
    assert optim.optimizer.weight_decay == 0.05
    assert optim.paramwise_cfg == dict(
        norm_decay_mult=0.0,
        bias_decay_mult=0.0,
        custom_keys={'.layer_scale': dict(decay_mult=0.0)})

    # 300 epochs, 5 linear warm-up epochs, then cosine
    assert cfg.train_cfg.max_epochs == 300
    warmup, cosine = cfg.param_scheduler
    assert warmup.type == 'LinearLR' and (warmup.begin, warmup.end) == (0, 5)
    assert cosine.type == 'CosineAnnealingLR'
    assert (cosine.begin, cosine.end) == (5, 300)
    assert warmup.convert_to_iter_based and cosine.convert_to_iter_based

    # EMA, top-1 / top-5; checkpoints written whole, divergence stopped
    assert [h.type for h in cfg.custom_hooks] == [
        'EMAHook', 'EfficientModConfigCheckHook', 'NonFiniteCheckHook'
    ]
    assert cfg.default_hooks.checkpoint.type == 'SafeCheckpointHook'
    assert cfg.custom_hooks[0].momentum == 1e-4
    for evaluator in (cfg.val_evaluator, cfg.test_evaluator):
        assert evaluator.type == 'Accuracy'
        assert tuple(evaluator.topk) == (1, 5)


def test_weight_decay_spares_norms_biases_and_layer_scales():
    cfg = Config.fromfile(config_path('s'))
    init_default_scope('mmpretrain')
    model = MODELS.build(cfg.model)
    optim = build_optim_wrapper(model, cfg.optim_wrapper)
    decay = {}
    for group in optim.optimizer.param_groups:
        for p in group['params']:
            decay[id(p)] = group['weight_decay']
    norm_params = {
        id(p)
        for m in model.modules() if isinstance(m, torch.nn.LayerNorm)
        for p in m.parameters()
    }
    assert norm_params
    seen = dict(layer_scale=0, norm=0, bias=0, decayed=0)
    for name, p in model.named_parameters():
        if name.endswith('.layer_scale'):
            kind = 'layer_scale'
        elif id(p) in norm_params:
            kind = 'norm'
        elif name.endswith('.bias'):
            kind = 'bias'
        else:
            kind = 'decayed'
            assert p.dim() > 1, name
        seen[kind] += 1
        expected = 0.05 if kind == 'decayed' else 0.0
        assert decay[id(p)] == expected, (name, decay[id(p)])
    assert seen['layer_scale'] == 4 + 4 + 8 + 4  # one per modulation block
    assert all(seen.values())


@pytest.mark.parametrize('name', list(ARCHS))
def test_classifier_configs_build_and_predict_1000_classes(name):
    cfg = Config.fromfile(config_path(name))
    init_default_scope('mmpretrain')
    model = MODELS.build(cfg.model).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 64, 64), mode='tensor')
    assert out.shape == (2, 1000)


# ---------------------------------------------------------------------------
# End to end on the embedded ImageNet: distillation + EMA, checkpoint, test
# ---------------------------------------------------------------------------
@pytest.fixture(scope='module')
def imagenet(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('embedded') / 'imagenet')
    synthetic_data.make_imagenet(
        root, num_per_class_train=8, num_per_class_val=4, img_size=64)
    return root


@pytest.fixture(scope='module')
def trained(imagenet, tmp_path_factory):
    """Two epochs (8 iterations) of distillation with EMA through the
    project's tools/train.py."""
    work_dir = str(tmp_path_factory.mktemp('work'))
    out = run_tool([
        'tools/train.py', EMBEDDED_CFG, '--work-dir', work_dir, '--cfg-options'
    ] + data_options(imagenet))
    return dict(
        work_dir=work_dir,
        log=out,
        checkpoint=osp.join(work_dir, 'epoch_2.pth'))


@pytest.mark.e2e
def test_e2e_training_distills_and_checkpoints_without_teacher(trained):
    log = trained['log']
    losses = re.findall(
        r'Epoch\(train\) +\[\d+\]\[\d+/4\].*? loss: '
        r'([\d.]+) +loss_distill: ([\d.]+)', log)
    assert len(losses) == 8, log[-3000:]
    assert all(float(d) > 0 for _, d in losses)
    assert 'accuracy/top1' in log and 'accuracy/top5' in log

    ckpt = load_checkpoint(trained['checkpoint'])
    state = ckpt['state_dict']
    assert not any('teacher' in k for k in state)
    assert not any('teacher' in k for k in ckpt['ema_state_dict'])
    optim_params = sum(
        len(g['params']) for g in ckpt['optimizer']['param_groups'])
    assert optim_params == len(state)  # the teacher was not optimised
    # the student's keys are exactly those of the plain classifier
    cfg = Config.fromfile(config_path('xxs'))
    init_default_scope('mmpretrain')
    plain = MODELS.build(cfg.model)
    assert set(state) == set(plain.state_dict())
    plain.load_state_dict(state, strict=True)
    # EMAHook saved the averaged weights as `state_dict`, the online ones
    # under `ema_state_dict`; they differ after training.
    online = strip_prefix(ckpt['ema_state_dict'], drop_others=True)
    assert set(online) == set(state)
    assert any(not torch.equal(online[k], state[k]) for k in state)


def predict_scores(cfg, state_dict):
    """Scores of the config's test set, in order, with the given weights."""
    from mmengine.registry import DATASETS
    init_default_scope('mmpretrain')
    model_cfg = cfg.model.copy()
    # as the runner does: the top-level data_preprocessor goes to the model
    model_cfg.setdefault('data_preprocessor', cfg.get('data_preprocessor'))
    model = MODELS.build(model_cfg)
    model.load_state_dict(state_dict, strict=True)
    model.eval()
    dataset = DATASETS.build(cfg.test_dataloader.dataset)
    scores = []
    with torch.no_grad():
        for start in range(0, len(dataset), 8):
            data = pseudo_collate([
                dataset[i] for i in range(start, min(start + 8, len(dataset)))
            ])
            scores += [s.pred_score for s in model.test_step(data)]
    return torch.stack(scores)


@pytest.mark.e2e
def test_e2e_test_tool_evaluates_the_ema_weights(trained, imagenet, tmp_path):
    preds = str(tmp_path / 'preds.pkl')
    out = run_tool([
        'tools/test.py', EMBEDDED_CFG, trained['checkpoint'], '--work-dir',
        str(tmp_path), '--out', preds, '--cfg-options'
    ] + data_options(imagenet))
    metrics = re.search(r'accuracy/top1: ([\d.]+) +accuracy/top5: ([\d.]+)',
                        out)
    assert metrics, out[-3000:]
    top1, top5 = map(float, metrics.groups())
    assert not KEY_WARNING.search(out), out[-3000:]
    with open(preds, 'rb') as f:
        dumped = pickle.load(f)
    assert len(dumped) == 16
    tested = torch.stack([d['pred_score'] for d in dumped])

    ckpt = load_checkpoint(trained['checkpoint'])
    cfg = Config.fromfile(EMBEDDED_CFG)
    cfg.merge_from_dict({'test_dataloader.dataset.data_root': imagenet})
    ema_scores = predict_scores(cfg, ckpt['state_dict'])
    torch.testing.assert_close(tested, ema_scores, atol=1e-5, rtol=1e-4)
    # The printed accuracies are those of these scores.
    labels = torch.tensor([d['gt_label'].item() for d in dumped])
    top5_hits = (ema_scores.topk(5, dim=1).indices == labels[:, None]).any(1)
    assert top1 == pytest.approx(
        (ema_scores.argmax(1) == labels).float().mean().item() * 100, abs=1e-3)
    assert top5 == pytest.approx(
        top5_hits.float().mean().item() * 100, abs=1e-3)
    online = dict(ckpt['state_dict'])
    online.update(strip_prefix(ckpt['ema_state_dict'], drop_others=True))
    online_scores = predict_scores(cfg, online)
    assert (online_scores - tested).abs().max() > 1e-4


@pytest.mark.e2e
def test_publish_ema_writes_the_evaluated_weights(trained, tmp_path,
                                                  load_tool):
    publish_ema = load_tool('model_converters/publish_ema')
    ckpt = load_checkpoint(trained['checkpoint'])
    out = run_tool([
        'tools/model_converters/publish_ema.py', trained['checkpoint'],
        str(tmp_path / 'xxs.pth')
    ])
    path = out.strip().splitlines()[-1]
    assert re.fullmatch(r'.*/xxs-[0-9a-f]{8}\.pth', path), path
    published = torch.load(path, map_location='cpu', weights_only=True)
    assert set(published) == {'state_dict', 'meta'}
    assert published['meta']['weights'] == 'ema'
    assert published['meta']['epoch'] == 2
    state = published['state_dict']
    assert state.keys() == ckpt['state_dict'].keys()
    for k, v in ckpt['state_dict'].items():
        assert torch.equal(state[k], v), k

    online_path = publish_ema.publish(
        trained['checkpoint'],
        str(tmp_path / 'online.pth'),
        online=True,
        add_hash=False)
    online = torch.load(online_path, weights_only=True)
    assert online['meta']['weights'] == 'online'
    for k, v in strip_prefix(ckpt['ema_state_dict'], drop_others=True).items():
        assert torch.equal(online['state_dict'][k], v), k


# ---------------------------------------------------------------------------
# A converted released checkpoint through tools/test.py
# ---------------------------------------------------------------------------
@pytest.mark.parametrize('arch,name', [('xxs', 'xxs'), ('s', 's')])
@pytest.mark.e2e
def test_converted_release_evaluates_without_key_warnings(
        arch, name, imagenet, tmp_path):
    fixture = load_parity_fixture(arch)
    converted = convert_released(fixture['checkpoint'], use_ema=False)
    path = str(tmp_path / f'efficientmod_{arch}_mm.pth')
    torch.save(converted, path)
    preds = str(tmp_path / 'preds.pkl')
    # the released models are 1000-way; the embedded images carry 4 of the
    # labels, so only the plumbing and the weights matter, not the accuracy
    out = run_tool([
        'tools/test.py',
        config_path(name), path, '--work-dir',
        str(tmp_path), '--out', preds, '--cfg-options',
        f'test_dataloader.dataset.data_root={imagenet}',
        'test_dataloader.num_workers=0', 'test_dataloader.batch_size=16'
    ])
    assert re.search(r'accuracy/top1: [\d.]+ +accuracy/top5: [\d.]+', out)
    assert not KEY_WARNING.search(out), out[-3000:]
    assert 'Load checkpoint from' in out
    with open(preds, 'rb') as f:
        dumped = pickle.load(f)
    scores = torch.stack([d['pred_score'] for d in dumped])
    assert scores.shape == (16, 1000)

    # tools/test.py ran the released weights: same scores as the converted
    # state dict loaded strictly in this process
    cfg = Config.fromfile(config_path(name))
    cfg.merge_from_dict({'test_dataloader.dataset.data_root': imagenet})
    expected = predict_scores(cfg, {
        k: v.float()
        for k, v in converted['state_dict'].items()
    })
    torch.testing.assert_close(scores, expected, atol=1e-5, rtol=1e-4)
