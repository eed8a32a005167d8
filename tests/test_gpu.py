"""The GPU paths: --amp in float16/bfloat16, SyncBN and NCCL in the
published configs, parity and ONNX on CUDA.

Tests marked ``cuda`` run where a GPU is visible and are reported as
skipped elsewhere; the rest check the configs and the tool's decisions on
any machine.
"""
import glob
import math
import os.path as osp

import pytest
import torch
from _detseg_utils import (REPO, free_port, load_tool, run, tiny_det_config,
                           tiny_seg_config)
from mmengine.config import Config
from parity import load_parity_fixture

from mmefficientmod.config_tree import walk_config
from mmefficientmod.deploy.openvino import openvino_available

DET_CONFIGS = sorted(
    p for p in glob.glob(osp.join(REPO, 'configs/mask_rcnn/*_coco.py')))
SEG_CONFIGS = sorted(
    p for p in glob.glob(osp.join(REPO, 'configs/sem_fpn/*_ade20k-*.py')))


def norm_types(node):
    """Every ``norm_cfg`` type in a model config."""
    return [
        part['norm_cfg'].get('type') for _, part in walk_config(node)
        if isinstance(part.get('norm_cfg'), dict)
    ]


@pytest.mark.parametrize('path', SEG_CONFIGS, ids=osp.basename)
def test_semantic_fpn_head_uses_syncbn_and_nccl(path):
    cfg = Config.fromfile(path)
    assert set(norm_types(cfg.model)) == {'SyncBN'}
    assert cfg.env_cfg.dist_cfg.backend == 'nccl'


@pytest.mark.parametrize('path', DET_CONFIGS, ids=osp.basename)
def test_mask_rcnn_has_no_batchnorm_to_sync(path):
    """EfficientMod normalises with LayerNorm and mmdet's FPN and heads
    have no norm layers: nothing to synchronise."""
    cfg = Config.fromfile(path)
    assert norm_types(cfg.model) == []
    assert cfg.env_cfg.dist_cfg.backend == 'nccl'


def test_syncbn_to_bn_switch_named_in_readme():
    cfg = Config.fromfile(SEG_CONFIGS[0])
    cfg.merge_from_dict({'model.decode_head.norm_cfg.type': 'BN'})
    assert set(norm_types(cfg.model)) == {'BN'}
    with open(osp.join(REPO, 'README.md'), encoding='utf-8') as f:
        assert 'model.decode_head.norm_cfg.type=BN' in f.read()


@pytest.mark.parametrize('dtype', ['float16', 'bfloat16'])
def test_amp_without_gpu_names_the_fix(dtype, monkeypatch):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    train = load_tool('train')
    args = train.parse_args([DET_CONFIGS[0], '--amp', dtype])
    with pytest.raises(SystemExit, match='drop --amp'):
        train.build_config(args)


def test_amp_argument_defaults_to_float16():
    train = load_tool('train')
    assert train.parse_args([DET_CONFIGS[0], '--amp']).amp == 'float16'
    assert train.parse_args([DET_CONFIGS[0]]).amp is None
    with pytest.raises(SystemExit):
        train.parse_args([DET_CONFIGS[0], '--amp', 'float8'])


def test_bfloat16_routes_roi_align_through_torchvision():
    train = load_tool('train')
    cfg = Config.fromfile(DET_CONFIGS[0])
    assert train.roi_align_through_torchvision(cfg.model) == 2  # bbox, mask
    extractors = (cfg.model.roi_head.bbox_roi_extractor,
                  cfg.model.roi_head.mask_roi_extractor)
    assert all(e.roi_layer.use_torchvision for e in extractors)


@pytest.fixture
def no_tf32():
    """True float32 on the GPU: TF32 convolutions miss 1e-4."""
    before = torch.backends.cudnn.allow_tf32, \
        torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, \
        torch.backends.cuda.matmul.allow_tf32 = before


def parity_classifier(arch, fixture):
    """Our classifier of ``arch`` with the fixture's converted weights."""
    from mmengine.registry import MODELS, init_default_scope

    import mmefficientmod  # noqa: F401
    from mmefficientmod.checkpoint import convert_released
    cfg = Config.fromfile(
        osp.join(REPO, 'configs/efficientmod',
                 f'efficientmod-{arch.replace("_", "-")}_8xb256_in1k.py'))
    init_default_scope('mmpretrain')
    classifier = MODELS.build(cfg.model).eval()
    classifier.load_state_dict(
        convert_released(fixture['checkpoint'])['state_dict'])
    return classifier


@pytest.mark.cuda
@pytest.mark.parametrize('arch', ['xxs', 's'])
def test_parity_on_cuda(arch, no_tf32):
    from mmefficientmod import EfficientMod
    fixture = load_parity_fixture(arch)
    classifier = parity_classifier(arch, fixture)
    dense = EfficientMod(arch).eval()
    dense.load_state_dict(classifier.backbone.state_dict(), strict=False)
    classifier.cuda()
    dense.cuda()
    with torch.no_grad():
        for x, logits, features in zip(fixture['inputs'], fixture['logits'],
                                       fixture['features']):
            x = x.float().cuda()
            torch.testing.assert_close(
                classifier(x, mode='tensor').cpu(),
                logits.float(),
                rtol=0,
                atol=1e-4)
            for out, ref in zip(dense(x), features):
                torch.testing.assert_close(
                    out.cpu(), ref.float(), rtol=0, atol=1e-4)


@pytest.mark.cuda
def test_onnx_export_traced_on_cuda(tmp_path, no_tf32):
    """A model on the GPU (as after training) exports to ONNX traced with
    CUDA tensors, and the CPU ONNX Runtime (no onnxruntime-gpu needed)
    gives the reference logits."""
    ort = pytest.importorskip('onnxruntime')
    from mmefficientmod.models import TensorMode
    fixture = load_parity_fixture('xxs')
    model = TensorMode(parity_classifier('xxs', fixture)).cuda()
    path = str(tmp_path / 'xxs_cuda.onnx')
    torch.onnx.export(
        model, (fixture['inputs'][0].float().cuda(), ),
        path,
        input_names=['input'],
        output_names=['output0'],
        dynamic_axes={
            'input': {
                0: 'batch'
            },
            'output0': {
                0: 'batch'
            }
        },
        opset_version=17,
        dynamo=False)
    session = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
    for x, logits in zip(fixture['inputs'], fixture['logits']):
        got = session.run(None, {'input': x.float().numpy()})[0]
        torch.testing.assert_close(
            torch.from_numpy(got), logits.float(), rtol=0, atol=1e-4)


def amp_train(cfg_path, work_dir, dtype, options):
    """Train a few steps in process with ``--amp dtype``; returns the runner
    and the dtypes the backbone produced."""
    train = load_tool('train')
    args = train.parse_args([
        cfg_path, '--work-dir',
        str(work_dir), '--amp', dtype, '--cfg-options', *options
    ])
    cfg = train.build_config(args)
    runner = train.build_runner(cfg)
    seen = []
    # A convolution's output shows the autocast dtype (a block's output may
    # be promoted back to float32 by its residual sum).
    conv = next(m for m in runner.model.backbone.modules()
                if isinstance(m, torch.nn.Conv2d))
    conv.register_forward_hook(
        lambda module, inputs, output: seen.append(output.dtype))
    before = {
        k: v.detach().clone()
        for k, v in runner.model.backbone.state_dict().items()
    }
    runner.train()
    after = runner.model.backbone.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert all(
        torch.isfinite(v).all() for v in after.values()
        if v.is_floating_point())
    loss = runner.message_hub.get_scalar('train/loss').current()
    assert math.isfinite(loss)
    return runner, seen


@pytest.mark.cuda
@pytest.mark.e2e
@pytest.mark.parametrize('dtype', ['float16', 'bfloat16'])
def test_mask_rcnn_amp_training_step(tiny_data, tmp_path, dtype):
    from mmengine.optim import AmpOptimWrapper
    coco, _ = tiny_data
    cfg = tiny_det_config(str(tmp_path), coco)
    runner, seen = amp_train(
        cfg, tmp_path / 'work', dtype,
        ['train_cfg.max_epochs=1', 'train_cfg.val_interval=100'])
    assert isinstance(runner.optim_wrapper, AmpOptimWrapper)
    assert set(seen) == {getattr(torch, dtype)}


@pytest.mark.cuda
@pytest.mark.e2e
@pytest.mark.parametrize('dtype', ['float16', 'bfloat16'])
def test_semantic_fpn_amp_training_step(tiny_data, tmp_path, dtype):
    _, ade = tiny_data
    cfg = tiny_seg_config(str(tmp_path), ade)
    # The published head's SyncBN: on one GPU it runs as plain BN.
    runner, seen = amp_train(cfg, tmp_path / 'work', dtype, [
        'train_cfg.max_iters=4', 'train_cfg.val_interval=100',
        'model.decode_head.norm_cfg.type=SyncBN'
    ])
    assert set(seen) == {getattr(torch, dtype)}


@pytest.mark.cuda(gpus=2)
@pytest.mark.e2e
def test_dist_train_nccl_syncbn_amp(tiny_data, tmp_path):
    _, ade = tiny_data
    cfg = tiny_seg_config(str(tmp_path), ade)
    log = run([
        osp.join(REPO, 'tools', 'dist_train.sh'), cfg, '2', '--work-dir',
        str(tmp_path / 'work'), '--amp', '--cfg-options',
        'train_cfg.max_iters=4', 'train_cfg.val_interval=100',
        'model.decode_head.norm_cfg.type=SyncBN'
    ],
              PORT=str(free_port())).stdout
    assert "'backend': 'nccl'" in log or 'backend: nccl' in log
    assert 'Iter(train) [4/4]' in log


@pytest.mark.cuda
def test_onnx_export_runs_on_cuda(tmp_path):
    ort = pytest.importorskip('onnxruntime')
    if 'CUDAExecutionProvider' not in ort.get_available_providers():
        pytest.skip('this onnxruntime has no CUDA provider: install '
                    'onnxruntime-gpu for the CUDA half of this test')
    from mmefficientmod.checkpoint import convert_released
    fixture = load_parity_fixture('xxs')
    ckpt = tmp_path / 'xxs.pth'
    torch.save(convert_released(fixture['checkpoint']), ckpt)
    out = str(tmp_path / 'xxs.onnx')
    tool = load_tool('deployment/pytorch2onnx')
    config = osp.join(REPO,
                      'configs/efficientmod/efficientmod-xxs_8xb256_in1k.py')
    assert tool.main([config, str(ckpt), '--out', out, '--deploy']) == 0
    # TF32 (on by default in ONNX Runtime's CUDA provider) misses 1e-4.
    session = ort.InferenceSession(
        out,
        providers=[('CUDAExecutionProvider', {
            'use_tf32': 0
        }), 'CPUExecutionProvider'])
    assert session.get_providers()[0] == 'CUDAExecutionProvider'
    for x, logits in zip(fixture['inputs'], fixture['logits']):
        got = session.run(None, {'input': x.float().numpy()})[0]
        torch.testing.assert_close(
            torch.from_numpy(got), logits.float(), rtol=0, atol=1e-4)


# The benchmark's --device cuda path (tools/analysis_tools/benchmark.py):
# its arguments, and the same code on the CPU (its CUDA figures come from the
# GPU check).
def benchmark():
    return load_tool('analysis_tools/benchmark')


@pytest.fixture
def no_reference(monkeypatch):
    monkeypatch.delenv('MMEFFICIENTMOD_REFERENCE', raising=False)


def parse_error(argv, capsys):
    with pytest.raises(SystemExit):
        benchmark().parse_args(argv)
    return capsys.readouterr().err


def test_benchmark_gpu_without_gpu_names_the_cpu_flag(no_reference, capsys,
                                                      monkeypatch):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    assert '--device cpu' in parse_error(
        ['--archs', 'xxs', '--device', 'cuda'], capsys)


def test_benchmark_gpu_defaults(no_reference, monkeypatch):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    args = benchmark().parse_args(['--archs', 'xxs', '--device', 'cuda'])
    # Without the authors' file, their form is left out rather than failed.
    assert args.forms == ['eager', 'compiled']
    assert args.dtypes == ['float32', 'float16', 'bfloat16']
    assert args.batch_sizes == [1, 64, 256]
    assert (args.warmup, args.iters) == (5, 40)
    assert not args.train
    train = benchmark().parse_args(
        ['--archs', 'xxs', '--device', 'cuda', '--train'])
    assert train.forms == ['eager']
    cpu = benchmark().parse_args(['--archs', 'xxs'])
    assert cpu.dtypes == ['float32'] and cpu.batch_sizes == [1, 32]
    assert 'compiled' not in cpu.forms and 'int8' in cpu.forms


def test_benchmark_gpu_reads_the_reference_setting(monkeypatch, tmp_path,
                                                   capsys):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    authors = tmp_path / 'upstream' / 'EfficientMod.py'
    authors.parent.mkdir()
    authors.write_text('')
    monkeypatch.setenv('MMEFFICIENTMOD_REFERENCE', str(tmp_path))
    argv = ['--archs', 'xxs', '--device', 'cuda']
    args = benchmark().parse_args(argv)
    assert args.upstream == str(authors)
    assert args.forms == ['authors-eager', 'eager', 'compiled']
    monkeypatch.setenv('MMEFFICIENTMOD_REFERENCE', str(tmp_path / 'none'))
    assert 'MMEFFICIENTMOD_REFERENCE' in parse_error(argv, capsys)


@pytest.mark.parametrize('argv,message', [
    (['--forms', 'authors-eager'], "the authors' forms need"),
    (['--batch-sizes', '0'], 'must be positive'),
    (['--dtypes', 'float8'], 'invalid choice'),
    (['--forms', 'eager', 'fp32'], "['fp32'] run on the CPU"),
])
def test_benchmark_gpu_bad_arguments(no_reference, capsys, monkeypatch, argv,
                                     message):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    assert message in parse_error(
        ['--archs', 'xxs', '--device', 'cuda', *argv], capsys)


@pytest.fixture
def restore_threads():
    """The CPU tests run the benchmark with ``--threads 1`` (on a shared
    2-core machine two threads wait on each other); later tests get the
    setting back."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_benchmark_gpu_cpu_inference(tmp_path, restore_threads):
    """The GPU check's rehearsal command: every device form in float32 and
    bfloat16 autocast."""
    from parity import upstream_model_file
    out = tmp_path / 'bench.csv'
    rows = benchmark().main([
        '--device', 'cpu', '--archs', 'xxs', '--upstream',
        upstream_model_file(), '--forms', 'authors-eager', 'eager', 'compiled',
        '--dtypes', 'float32', 'bfloat16', '--batch-sizes', '1', '2',
        '--input-size', '64', '64', '--warmup', '1', '--iters', '2',
        '--compile-backend', 'eager', '--threads', '1', '--csv',
        str(out)
    ])
    assert [(r['dtype'], r['batch'], r['form']) for r in rows] == [
        (dtype, batch, form) for dtype in ('float32', 'bfloat16')
        for batch in (1, 2) for form in ('authors-eager', 'eager', 'compiled')
    ]
    for r in rows:
        assert r['images_per_s'] == pytest.approx(r['batch'] * 1e3 /
                                                  r['median_ms'])
        assert r['rounds'] == 2 and r['mode'] == 'inference'
        # The same weights: float32 agrees with the authors' float32
        # logits; bfloat16 autocast stays close.
        floor = 0.99999 if r['dtype'] == 'float32' else 0.99
        assert r['cos_vs_fp32'] > floor, r
        assert r['reference'] == 'authors-eager'
        if r['form'] == 'authors-eager':
            assert r['x_authors_eager'] == pytest.approx(1.0)
        autocast = r['dtype'] == 'bfloat16'
        assert ('autocast' in r['engine']) == autocast, r['engine']
    with open(out) as f:
        lines = f.read().splitlines()
    assert len(lines) == 1 + len(rows)
    assert lines[0].startswith('model,mode,dtype,batch,form')
    assert ',device,' in lines[0] and 'logical cores' in lines[1]
    # The settings, then (with OpenVINO) the CPU peaks of the run.
    peaks = ''.join(f',peak_{p}_gflop_per_s' for p in ('f32', 'bf16', 'int8'))
    assert lines[0].endswith(',compile_backend,input_size' +
                             (peaks if openvino_available() else ''))
    assert ',eager,64x64' in lines[1]


def test_benchmark_gpu_cpu_training_rows(no_reference, restore_threads):
    rows = benchmark().main([
        '--device', 'cpu', '--archs', 'xxs', '--train', '--dtypes', 'bfloat16',
        '--batch-sizes', '2', '--input-size', '64', '64', '--warmup', '1',
        '--iters', '2', '--threads', '1'
    ])
    assert [(r['mode'], r['form'], r['batch'], r['dtype']) for r in rows] \
        == [('train step', 'eager', 2, 'bfloat16')]
    assert rows[0]['peak_mem_mb'] > 0  # the CPU's, from the profiler


@pytest.mark.parametrize('dtype', ['float32', 'float16', 'bfloat16'])
def test_benchmark_gpu_train_step_updates_weights(dtype):
    """The timed step trains: weights move and stay finite (float16 goes
    through the gradient scaler)."""
    args = benchmark().parse_args(['--archs', 'xxs', '--train'])
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3), torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(), torch.nn.Linear(8, 10))
    before = [p.detach().clone() for p in net.parameters()]
    step = benchmark().train_step(net, args, dtype)
    x, labels = torch.randn(4, 3, 16, 16), torch.tensor([0, 1, 2, 3])
    for _ in range(2):
        step(x, labels)
    after = list(net.parameters())
    assert all(not torch.equal(a, b) for a, b in zip(before, after))
    assert all(torch.isfinite(p).all() for p in after)


@pytest.mark.cuda
def test_benchmark_gpu_cuda_path(tmp_path):
    """The benchmark's CUDA path, small: every precision, inference and an
    AMP training step, the card named and its peak memory read."""
    args = [
        '--device', 'cuda', '--archs', 'xxs', '--batch-sizes', '2',
        '--input-size', '64', '64', '--warmup', '1', '--iters', '2',
        '--compile-backend', 'eager'
    ]
    rows = benchmark().main(args + ['--csv', str(tmp_path / 'b.csv')])
    assert {r['dtype'] for r in rows} == {'float32', 'float16', 'bfloat16'}
    assert all(r['cos_vs_fp32'] > 0.99 for r in rows), rows
    with open(tmp_path / 'b.csv') as f:
        assert torch.cuda.get_device_name(0) in f.read()
    train = benchmark().main(args + ['--train', '--forms', 'eager'])
    assert len(train) == 3 and all(r['peak_mem_mb'] > 0 for r in train)


@pytest.mark.parametrize('argv,message', [
    ([], 'usage: tools/gpu_check.sh DIR'),
    (['no-such-folder'], 'gpu_check.sh --prepare no-such-folder'),
    (['--prepare', 'wheels'], 'needs --mmcv-wheel FILE'),
])
def test_gpu_check_names_what_is_missing(argv, message):
    proc = run(['bash', osp.join(REPO, 'tools', 'gpu_check.sh'), *argv],
               check=False,
               timeout=60)
    assert proc.returncode != 0 and message in proc.stdout, proc.stdout
