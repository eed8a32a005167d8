"""Every backbone and predictor argument is range-checked, with an error
naming the argument, what it may be and the value given; odd input batches
(empty, another precision, integers) get a clear error or work."""
import math

import pytest
import torch

from mmefficientmod import EfficientMod
from mmefficientmod.deploy import cpu_predictor

ARCH = dict(
    widths=[8, 16, 24, 32],
    depths=[1, 1, 1, 1],
    attention_depths=[0, 0, 0, 1],
    ratios=[1, 2],
    attention_mlp_ratios=[2, 2, 2, 2])


def arch_with(**changes):
    return dict(ARCH, **changes)


BAD_BACKBONE_ARGUMENTS = [('drop_path_rate', 1.0), ('drop_path_rate', 1.5),
                          ('drop_path_rate', -0.1),
                          ('drop_path_rate', math.nan),
                          ('drop_path_rate', '0.1'),
                          ('layer_scale_init_value', -1e-4),
                          ('layer_scale_init_value', 0),
                          ('layer_scale_init_value', math.inf),
                          ('kernel_size', 4), ('kernel_size', 0),
                          ('kernel_size', -3), ('kernel_size', 3.0),
                          ('in_channels', 0), ('in_channels', 2.5),
                          ('in_channels', True), ('out_indices', ()),
                          ('out_indices', (0, 4)), ('out_indices', -5),
                          ('out_indices', '0'), ('out_indices', (1.0, )),
                          ('frozen_stages', -2), ('frozen_stages', 5),
                          ('frozen_stages', 1.5), ('out_type', 'cls_token'),
                          ('with_cp', 'yes'), ('deploy', 1),
                          ('init_cfg', 'Pretrained'),
                          ('init_cfg', dict(checkpoint='a.pth')),
                          ('pretrained', 3), ('arch', 3),
                          ('arch', arch_with(widths=[8, 16, 24])),
                          ('arch', arch_with(widths=[8, 16, 0, 32])),
                          ('arch', arch_with(depths=[1, -1, 1, 1])),
                          ('arch', arch_with(ratios=[])),
                          ('arch', arch_with(ratios=[0])),
                          ('arch', arch_with(attention_mlp_ratios=[2, 2, 2])),
                          ('arch',
                           arch_with(depths=[0] * 4,
                                     attention_depths=[0] * 4)),
                          ('arch', arch_with(width=[8] * 4))]


@pytest.mark.parametrize('name, value', BAD_BACKBONE_ARGUMENTS)
def test_bad_backbone_argument_is_named(name, value):
    with pytest.raises(ValueError) as info:
        EfficientMod(**{'arch': ARCH, name: value})
    message = str(info.value)
    assert name in message, message
    assert 'must be' in message or 'unknown keys' in message, message
    assert 'got' in message or 'unknown keys' in message, message


def test_unknown_arch_name():
    with pytest.raises(ValueError, match="'tiny'.*'xxs'"):
        EfficientMod('tiny')


@pytest.mark.parametrize('name, value', [('drop_path_rate', 0.99),
                                         ('layer_scale_init_value', 1.0),
                                         ('kernel_size', 1),
                                         ('frozen_stages', 4),
                                         ('out_indices', -1),
                                         ('in_channels', 1)])
def test_edge_values_are_accepted(name, value):
    backbone = EfficientMod(**{'arch': ARCH, name: value}).eval()
    channels = value if name == 'in_channels' else 3
    assert backbone(torch.randn(1, channels, 32, 32))


def test_drop_path_close_to_one_trains_finite():
    backbone = EfficientMod(ARCH, drop_path_rate=0.9).train()
    outs = backbone(torch.randn(2, 3, 32, 32))
    assert all(torch.isfinite(o).all() for o in outs)


@pytest.fixture(scope='module')
def backbone():
    return EfficientMod(ARCH).eval()


BAD_PREDICTOR_ARGUMENTS = [('precision', 'fp16'), ('precision', None),
                           ('engine', 'tensorrt'), ('engine', 3),
                           ('threads', 0), ('threads', 1.5),
                           ('num_calibration_batches', 0),
                           ('example_shape', (1, 3, 224)),
                           ('example_shape', (1, 3, 0, 224)),
                           ('calibration_data', 5),
                           ('model', 'efficientmod-xxs')]


@pytest.mark.parametrize('name, value', BAD_PREDICTOR_ARGUMENTS)
def test_bad_predictor_argument_is_named(backbone, name, value):
    arguments = dict(model=backbone, precision='fp32', engine='torch')
    arguments[name] = value
    with pytest.raises(ValueError) as info:
        cpu_predictor(**arguments)
    message = str(info.value)
    assert name in message and 'must be' in message and 'got' in message


def test_predictor_workdir_that_is_a_file(backbone, tmp_path):
    path = tmp_path / 'file'
    path.write_text('x')
    with pytest.raises(ValueError, match='workdir must be'):
        cpu_predictor(backbone, 'fp32', 'torch', workdir=str(path))


def test_empty_batch_is_a_clear_error(backbone):
    with pytest.raises(ValueError, match='empty batch'):
        backbone(torch.zeros(0, 3, 32, 32))


def test_float16_input_to_a_float32_model_works(backbone):
    x = torch.randn(2, 3, 32, 32)
    expected = backbone(x)
    got = backbone(x.half())
    for a, b in zip(got, expected):
        assert a.dtype == torch.float32
        assert torch.allclose(a, b, atol=1e-2, rtol=1e-2)


def test_float32_input_to_a_bfloat16_model_works():
    model = EfficientMod(ARCH).eval().to(torch.bfloat16)
    outs = model(torch.randn(1, 3, 32, 32))
    assert all(o.dtype == torch.bfloat16 for o in outs)


def test_integer_images_are_a_clear_error(backbone):
    with pytest.raises(TypeError, match='normalise'):
        backbone(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))
