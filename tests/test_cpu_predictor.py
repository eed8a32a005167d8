"""mmefficientmod.deploy.cpu_predictor: each precision's agreement with the
float32 reference, its outputs' form, and its errors."""
import os.path as osp

import pytest
import torch
from parity import REPO, load_parity_fixture

from mmefficientmod.checkpoint import convert_released
from mmefficientmod.deploy import (cosine_similarity, cpu_has_bf16,
                                   cpu_predictor, top1_agreement)
from mmefficientmod.models import build_model_from_config

pytest.importorskip('onnxruntime')
CONFIG = osp.join(REPO, 'configs', 'efficientmod',
                  'efficientmod-xxs_8xb256_in1k.py')
# Agreement each precision must reach with the float32 reference logits.
MIN_COSINE = {'fp32': 0.999999, 'bf16': 0.999, 'int8': 0.99}
# OpenVINO's int8 keeps the residual stream in float32 (deploy/openvino.py)
# and is held to the 0.999; ONNX Runtime's int8 reaches 0.99.
MIN_COSINE_OPENVINO_INT8 = 0.999


@pytest.fixture(scope='module')
def xxs():
    fixture = load_parity_fixture('xxs')
    model = build_model_from_config(CONFIG)
    model.load_state_dict(
        convert_released(fixture['checkpoint'])['state_dict'], strict=True)
    return model, fixture


def assert_agrees(got, expected, precision, min_cosine=None):
    """``got`` holds float32 logits at ``precision``'s agreement with the
    reference ``expected``: cosine (``min_cosine``, else the precision's),
    top-1 and, for fp32, 1e-4."""
    expected = expected.float()
    assert got.dtype == torch.float32 and got.shape == expected.shape
    cos = cosine_similarity(got, expected, dim=1)
    assert cos.min().item() >= (min_cosine or MIN_COSINE[precision]), cos
    assert top1_agreement(got, expected) == 1.0
    if precision == 'fp32':
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-4)


def skip_without_bf16(precision):
    if precision == 'bf16' and not cpu_has_bf16():
        pytest.skip('this CPU has no bfloat16 arithmetic')


def calibration_batches(n=4, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(2, 3, 224, 224, generator=gen) for _ in range(n)]


def skip_without_engine(engine):
    if engine == 'openvino':
        pytest.importorskip(
            'openvino',
            reason='pip install openvino nncf '
            '(tools/install.sh installs them)')
        pytest.importorskip('nncf', reason='pip install nncf')


@pytest.mark.parametrize('precision,engine',
                         [('fp32', 'auto'), ('bf16', 'auto'), ('int8', 'auto'),
                          ('fp32', 'onnxruntime'), ('bf16', 'torch'),
                          ('int8', 'onnxruntime'),
                          ('int8', 'onnxruntime-static'), ('fp32', 'openvino'),
                          ('bf16', 'openvino'), ('int8', 'openvino')])
def test_logits_agree_with_the_reference(xxs, precision, engine):
    skip_without_bf16(precision)
    skip_without_engine(engine)
    model, fixture = xxs
    predictor = cpu_predictor(
        model,
        precision,
        engine,
        calibration_data=calibration_batches(),
        threads=2)
    assert predictor.precision == precision
    assert engine == 'auto' or predictor.engine == engine
    strict = (precision, predictor.engine) == ('int8', 'openvino')
    for x, expected in zip(fixture['inputs'], fixture['logits']):
        assert_agrees(
            predictor(x.float()), expected, precision,
            MIN_COSINE_OPENVINO_INT8 if strict else None)


@pytest.mark.e2e  # Inductor compiles C++ (in worker processes): tens of seconds
@pytest.mark.parametrize('precision', ['fp32', 'bf16'])
def test_inductor_engine_agrees_with_the_reference(xxs, precision):
    skip_without_bf16(precision)
    model, fixture = xxs
    predictor = cpu_predictor(model, precision, 'inductor')
    assert predictor.engine == 'inductor'
    assert_agrees(
        predictor(fixture['inputs'][0].float()), fixture['logits'][0],
        precision)


@pytest.mark.parametrize('engine', ['torch', 'onnxruntime', 'openvino'])
def test_backbone_gives_float32_features(xxs, engine):
    from mmefficientmod import EfficientMod
    skip_without_engine(engine)
    model, fixture = xxs
    dense = EfficientMod('xxs').eval()
    dense.load_state_dict({
        k[len('backbone.'):]: v
        for k, v in model.state_dict().items()
        if k.startswith('backbone.') and not k.startswith('backbone.norm.')
    })
    predictor = cpu_predictor(dense, 'fp32', engine=engine)
    x = fixture['inputs'][1].float()  # 1 x 3 x 193 x 259: any size works
    feats = predictor(x)
    assert isinstance(feats, tuple) and len(feats) == 4
    for got, expected in zip(feats, fixture['features'][1]):
        assert got.dtype == torch.float32
        torch.testing.assert_close(got, expected.float(), rtol=0, atol=1e-4)


def test_model_is_left_unchanged(xxs):
    model, _ = xxs
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cpu_predictor(model, 'fp32', engine='torch')
    assert not model.backbone.deploy
    after = model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_bad_requests_raise_clear_errors(xxs):
    model, _ = xxs
    with pytest.raises(ValueError, match='precision must be one of'):
        cpu_predictor(model, 'fp16')
    for engine in ('onnxruntime-static', 'openvino'):
        with pytest.raises(ValueError, match='Static int8 .* needs calibr'):
            cpu_predictor(model, 'int8', engine=engine)
    with pytest.raises(NotImplementedError, match='cannot serve'):
        cpu_predictor(
            model,
            'int8',
            engine='torch',
            calibration_data=calibration_batches(1))
    with pytest.raises(ValueError, match='calibration data yielded no batch'):
        cpu_predictor(
            model, 'int8', engine='onnxruntime-static', calibration_data=[])
    predictor = cpu_predictor(model, 'fp32', engine='torch')
    with pytest.raises(ValueError, match='float32 N x 3 x H x W'):
        predictor(torch.zeros(3, 32, 32))
    with pytest.raises(ValueError, match='float32 N x 3 x H x W'):
        predictor(torch.zeros(1, 3, 32, 32, dtype=torch.float64))
