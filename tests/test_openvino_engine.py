"""cpu_predictor's OpenVINO engine: the precision that runs is the one asked
for (read back from the compiled model and from its execution graph), its
settings are recorded, and the rule of ``engine='auto'``."""
import os

import pytest
import torch
from test_cpu_predictor import CONFIG, calibration_batches, skip_without_bf16

from mmefficientmod.deploy import cpu_predictor, predictor
from mmefficientmod.models import build_model_from_config

pytest.importorskip(
    'openvino',
    reason='pip install openvino nncf '
    '(tools/install.sh installs them)')
pytest.importorskip('nncf', reason='pip install nncf')
from mmefficientmod.deploy.openvino import COMPUTE_OPS  # noqa: E402
from mmefficientmod.deploy.openvino import runtime_precisions  # noqa: E402


@pytest.fixture(scope='module')
def model():
    torch.manual_seed(0)
    return build_model_from_config(CONFIG).eval()


@pytest.mark.parametrize(
    'precision,hint,executed',
    [
        ('fp32', 'f32', {'f32'}),
        ('bf16', 'bf16', {'bf16'}),
        # Every convolution and matrix multiply, the depthwise ones included,
        # in int8: signed and unsigned activations (AVX512-VNNI) or signed
        # only (seen with AMX).
        ('int8', 'f32', ({'i8', 'u8'}, {'i8'})),
    ])
def test_the_precision_asked_for_is_what_runs(model, precision, hint,
                                              executed):
    skip_without_bf16(precision)
    got = cpu_predictor(
        model,
        precision,
        'openvino',
        calibration_data=calibration_batches(2),
        threads=2)
    assert got.engine == 'openvino' and got.precision == precision
    # OpenVINO would run f32 in bf16 on a bf16 CPU without the hint.
    assert got.engine_settings['INFERENCE_PRECISION_HINT'] == hint
    assert got.engine_settings['INFERENCE_NUM_THREADS'] == '2'
    assert got.engine_settings['PERFORMANCE_HINT'] == 'LATENCY'
    # What the CPU plugin executes: the matrix multiplies and convolutions.
    ran = runtime_precisions(got.compiled_model)
    if precision == 'int8':
        # The attention products stay float by design; where the plugin does
        # not fuse them into its attention kernel (seen on an AMD EPYC
        # without AVX-512) they show up as float32 MatMuls.
        assert ran.pop('f32', 0) == len(float_attention_products(got))
    expected = executed if isinstance(executed, tuple) else (executed, )
    assert set(ran) in expected, ran


def float_attention_products(got):
    """The float32 compute ops of the attention products."""
    names = []
    for op in got.compiled_model.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        if (info['layerType'].astype(str) in COMPUTE_OPS
                and info['runtimePrecision'].astype(str) == 'f32'):
            names.append(op.get_friendly_name())
    assert all('scaled_dot_product_attention' in n for n in names), names
    return names


def test_int8_takes_any_image_size(model):
    """Calibrated at one size, the int8 model runs at others (its
    activation scales are per tensor, not per image row)."""
    int8 = cpu_predictor(
        model, 'int8', 'openvino', calibration_data=calibration_batches(2))
    fp32 = cpu_predictor(model, 'fp32', 'openvino')
    x = torch.randn(1, 3, 96, 160, generator=torch.Generator().manual_seed(3))
    assert int8(x).shape == fp32(x).shape == (1, 1000)


def test_model_cache_is_written_and_reused(model, tmp_path):
    cache = str(tmp_path / 'cache')
    first = cpu_predictor(model, 'fp32', 'openvino', cache_dir=cache)
    blobs = os.listdir(cache)
    assert blobs, 'OpenVINO wrote no compiled model to the cache'
    second = cpu_predictor(model, 'fp32', 'openvino', cache_dir=cache)
    assert os.listdir(cache) == blobs  # loaded, not compiled again
    x = torch.randn(2, 3, 64, 64)
    torch.testing.assert_close(first(x), second(x), rtol=0, atol=0)


# What 'auto' runs without OpenVINO (or, for int8, without calibration data).
WITHOUT_OPENVINO = {
    'fp32': 'onnxruntime',
    'bf16': 'torch',
    'int8': 'onnxruntime'
}


@pytest.mark.parametrize('installed', [True, False])
@pytest.mark.parametrize('precision', ['fp32', 'bf16', 'int8'])
@pytest.mark.parametrize('calibrated', [True, False])
def test_auto_rule(monkeypatch, installed, precision, calibrated):
    monkeypatch.setattr(
        predictor, 'openvino_available', lambda int8=False: installed)
    usable = installed and (calibrated or precision != 'int8')
    expected = 'openvino' if usable else WITHOUT_OPENVINO[precision]
    assert predictor.auto_engine(precision, calibrated) == expected


def test_auto_records_the_engine_that_ran(model):
    assert cpu_predictor(model, 'fp32').engine == 'openvino'
    assert cpu_predictor(model, 'int8').engine == 'onnxruntime'
    int8 = cpu_predictor(
        model, 'int8', calibration_data=calibration_batches(1))
    assert int8.engine == 'openvino'
    assert 'openvino' in repr(int8) and 'int8' in repr(int8)
