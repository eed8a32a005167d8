"""tools/analysis_tools/benchmark.py: runs, and reports what it claims to.

Small inputs and one timed round: these tests check the tool's behaviour and
the agreement figures it reports, never speed."""
import csv
import importlib.util
import os.path as osp

import pytest

from parity import REPO


def load_tool():
    path = osp.join(REPO, 'tools', 'analysis_tools', 'benchmark.py')
    spec = importlib.util.spec_from_file_location('benchmark_tool', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_inference_forms_side_by_side(tmp_path):
    pytest.importorskip('onnxruntime')
    tool = load_tool()
    out_csv, out_png = tmp_path / 'b.csv', tmp_path / 'b.png'
    rows = tool.main([
        '--archs', 'xxs', '--forms', 'reference', 'eager', 'deploy', 'onnx',
        '--batch-sizes', '2', '--dtypes', 'float32', 'bfloat16',
        '--input-size', '64', '64', '--threads', '2', '--warmup', '0',
        '--iters', '2', '--csv', str(out_csv), '--plot', str(out_png)])
    got = {(r['batch'], r['dtype'], r['form']) for r in rows}
    for batch in (2, ):
        for form in ('reference', 'eager', 'deploy', 'onnx'):
            assert (batch, 'float32', form) in got
        for form in ('reference', 'eager', 'deploy'):
            assert (batch, 'bfloat16', form) in got
        assert (batch, 'bfloat16', 'onnx') not in got  # float32 export only
    for row in rows:
        assert row['rounds'] == 2
        assert row['median_ms'] > 0 and row['images_per_s'] > 0
        assert row['p90_ms'] >= row['median_ms'] >= row['min_ms']
        if row['form'] == 'reference':
            assert row['speedup_vs_reference'] == pytest.approx(1.0)
        if row['dtype'] == 'float32':
            assert row['max_abs_diff_vs_fp32_reference'] < 1e-4
            assert row['cos_vs_fp32_reference'] > 0.99999
        else:
            assert row['cos_vs_fp32_reference'] > 0.99
    with open(out_csv) as f:
        table = list(csv.DictReader(f))
    assert len(table) == len(rows)
    assert {'device', 'threads', 'torch', 'speedup_vs_reference'} <= set(table[0])
    assert table[0]['threads'] == '2'
    assert out_png.stat().st_size > 0


def test_training_step_time_and_peak_memory():
    tool = load_tool()
    rows = tool.main([
        '--archs', 'xxs', '--train', '--forms', 'reference', 'eager',
        '--batch-sizes', '2', '--input-size', '64', '64', '--warmup', '0',
        '--iters', '1'])
    assert [r['form'] for r in rows] == ['reference', 'eager']
    for row in rows:
        assert row['mode'] == 'train step' and row['part'] == 'backbone'
        assert row['peak_mem_mb'] > 0


def test_config_argument_and_backbone_only():
    tool = load_tool()
    config = osp.join(REPO, 'configs/efficientmod/efficientmod-xxs_8xb256_in1k.py')
    rows = tool.main([config, '--backbone-only', '--forms', 'reference', 'deploy',
                      '--batch-sizes', '1', '--dtypes', 'float32',
                      '--input-size', '64', '96', '--warmup', '0', '--iters', '1'])
    assert {r['model'] for r in rows} == {'efficientmod-xxs_8xb256_in1k'}
    assert all(r['part'] == 'backbone' for r in rows)
    assert all(r['max_abs_diff_vs_fp32_reference'] < 1e-4 for r in rows)
