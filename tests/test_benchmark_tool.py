"""tools/analysis_tools/benchmark.py on the CPU: runs, and reports what it
claims to (its --device cuda path: tests/test_gpu.py).

Small inputs and one or two timed rounds: these tests check the tool's
behaviour and the agreement figures it reports, never speed."""
import csv
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch
from parity import REPO, upstream_model_file


@pytest.fixture
def upstream_file():
    path = upstream_model_file()
    pytest.importorskip('onnxruntime')
    return path


def test_upstream_side_by_side_on_xxs(upstream_file, tmp_path, load_tool):
    tool = load_tool('analysis_tools/benchmark')
    out_csv = tmp_path / 'b.csv'
    rows = tool.main([
        '--archs', 'xxs', '--upstream', upstream_file, '--forms',
        'authors-eager', 'authors-onnx', 'eager', 'deploy', 'fp32',
        '--batch-sizes', '2', '--input-size', '64', '64', '--threads', '2',
        '--warmup', '0', '--iters', '2', '--csv',
        str(out_csv)
    ])
    assert [r['form'] for r in rows
            ] == ['authors-eager', 'authors-onnx', 'eager', 'deploy', 'fp32']
    flops = tool.count_flops(
        tool.TensorMode(tool.build_model_from_config(tool.arch_config('xxs'))),
        torch.randn(1, 3, 64, 64))
    for row in rows:
        assert row['reference'] == 'authors-eager'
        assert row['rounds'] == 2 and row['dtype'] == 'float32'
        # Same weights: every float32 form computes the authors' logits.
        assert row['max_abs_diff_vs_fp32'] < 1e-4
        assert row['top1_agree_vs_fp32'] == 1.0
        # GFLOP/s: the multiply-adds of one 64x64 image, times images/s.
        assert row['gflop_per_s'] == pytest.approx(row['images_per_s'] *
                                                   flops / 1e9)
    by_form = {r['form']: r for r in rows}
    assert by_form['eager']['x_authors_eager'] == pytest.approx(
        by_form['authors-eager']['median_ms'] / by_form['eager']['median_ms'])
    with open(out_csv) as f:
        table = list(csv.DictReader(f))
    assert len(table) == len(rows)
    assert table[0]['threads'] == '2'
    assert {'device', 'torch', 'onnxruntime'} <= set(table[0])


@pytest.mark.e2e
def test_upstream_training_step(upstream_file, load_tool):
    rows = load_tool('analysis_tools/benchmark').main([
        '--archs', 'xxs', '--upstream', upstream_file, '--train',
        '--batch-sizes', '2', '--input-size', '64', '64', '--warmup', '0',
        '--iters', '1'
    ])
    assert [r['form'] for r in rows] == ['authors-eager', 'eager']
    for row in rows:
        assert row['mode'] == 'train step'
        assert row['peak_mem_mb'] > 0


def test_own_forms_without_upstream_backbone_only(load_tool):
    pytest.importorskip('onnxruntime')
    config = osp.join(REPO, 'configs', 'efficientmod',
                      'efficientmod-xxs_8xb256_in1k.py')
    rows = load_tool('analysis_tools/benchmark').main([
        config, '--backbone-only', '--forms', 'eager', 'deploy', 'fp32',
        '--batch-sizes', '1', '--input-size', '64', '96', '--warmup', '0',
        '--iters', '1'
    ])
    assert {r['model'] for r in rows} == {'efficientmod-xxs_8xb256_in1k'}
    for row in rows:
        assert row['reference'] == 'eager'
        assert row['x_authors_onnx'] == '' and row['top1_agree_vs_fp32'] == ''
        assert row['max_abs_diff_vs_fp32'] < 1e-4


@pytest.mark.e2e
@pytest.mark.parametrize('env, policy', [
    (dict(), 'OMP_WAIT_POLICY unset; GOMP_SPINCOUNT 10000'),
    (dict(OMP_WAIT_POLICY='PASSIVE'),
     'OMP_WAIT_POLICY PASSIVE; GOMP_SPINCOUNT unset'),
    (dict(GOMP_SPINCOUNT='50'), 'OMP_WAIT_POLICY unset; GOMP_SPINCOUNT 50'),
])
def test_thread_wait_policy_default_and_caller_setting(env, policy):
    """A fresh process gets the bounded spin unless the caller chose."""
    config = osp.join(REPO, 'configs', 'efficientmod',
                      'efficientmod-xxs_8xb256_in1k.py')
    tool = osp.join(REPO, 'tools', 'analysis_tools', 'benchmark.py')
    argv = [
        config, '--backbone-only', '--forms', 'eager', '--batch-sizes', '1',
        '--input-size', '32', '32', '--warmup', '0', '--iters', '1'
    ]
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in ('OMP_WAIT_POLICY', 'GOMP_SPINCOUNT')
    }
    clean.update(env)
    out = subprocess.run([sys.executable, tool, *argv],
                         env=clean,
                         capture_output=True,
                         text=True,
                         check=True).stdout
    assert policy in out


@pytest.mark.parametrize('argv, message', [
    (['--forms', 'authors-onnx', '--archs', 'xxs'], 'need --upstream'),
    (['--archs', 'xxs', '--upstream', 'x.py', '--backbone-only'
      ], 'cannot be compared'),
    ([], 'give a CONFIG or --archs'),
    (['--archs', 'xxs', '--forms', 'eager', 'int8', '--dtypes', 'bfloat16'
      ], "['int8'] run on the CPU from float32 input"),
    (['--archs', 'xxs', '--upstream', 'nope.py'], "no authors' model file"),
])
def test_bad_arguments_are_named(argv, message, capsys, load_tool,
                                 monkeypatch):
    monkeypatch.delenv('MMEFFICIENTMOD_REFERENCE', raising=False)
    with pytest.raises(SystemExit):
        load_tool('analysis_tools/benchmark').parse_args(argv)
    assert message in capsys.readouterr().err


def test_openvino_forms_beside_the_authors(upstream_file, load_tool):
    """The authors' graph in OpenVINO and ours, with what ran recorded."""
    pytest.importorskip('openvino', reason='pip install openvino nncf')
    pytest.importorskip('nncf', reason='pip install nncf')
    rows = load_tool('analysis_tools/benchmark').main([
        '--archs', 'xxs', '--upstream', upstream_file, '--forms',
        'authors-onnx', 'authors-openvino-fp32', 'fp32', 'int8',
        'fp32-onnxruntime', '--batch-sizes', '2', '--input-size', '64', '64',
        '--threads', '2', '--warmup', '0', '--iters', '2', '--calib-batches',
        '1'
    ])
    by_form = {r['form']: r for r in rows}
    assert list(by_form) == [
        'authors-onnx', 'authors-openvino-fp32', 'fp32', 'int8',
        'fp32-onnxruntime'
    ]
    for name in ('authors-openvino-fp32', 'fp32'):
        assert 'INFERENCE_PRECISION_HINT=f32' in by_form[name]['engine']
        assert by_form[name]['max_abs_diff_vs_fp32'] < 1e-4
    assert by_form['fp32']['engine'].startswith('openvino fp32')
    assert by_form['int8']['engine'].startswith('openvino int8')
    assert by_form['fp32-onnxruntime']['engine'] == 'onnxruntime fp32'
    # int8 computes other logits, close to float32 ones.
    assert 0 < by_form['int8']['max_abs_diff_vs_fp32']
    assert by_form['int8']['cos_vs_fp32'] > 0.99
    # The ratio against the fastest of the authors' forms.
    fastest = min(by_form[f]['median_ms']
                  for f in ('authors-onnx', 'authors-openvino-fp32'))
    for row in rows:
        assert row['x_authors_best'] == pytest.approx(fastest /
                                                      row['median_ms'])


def test_device_names_the_cpu_features(load_tool):
    tool = load_tool('analysis_tools/benchmark')
    features = tool.device_name('cpu').rsplit('; ', 1)[1].rstrip(')')
    with open('/proc/cpuinfo') as f:
        flags = set(f.read().split())
    present = [f for f in tool.SPEED_FLAGS if f in flags]
    assert features == (' '.join(present) if present else 'none of ' +
                        ' '.join(tool.SPEED_FLAGS))
