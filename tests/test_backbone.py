"""The EfficientMod backbone: parity with the reference, sizes, arguments, errors."""
import pytest
import torch
from _detseg_utils import load_tool
from mmengine.registry import MODELS, init_default_scope
from parity import REPO, load_parity_fixture

import mmefficientmod  # noqa: F401  (registers EfficientMod)
from mmefficientmod import EfficientMod
from mmefficientmod.checkpoint import convert_released
from mmefficientmod.models import build_model_from_config

PARAMS = {
    'xxs': 4_736_264,
    'xs': 6_627_544,
    's': 12_897_184,
    's_conv': 12_872_336
}
PAPER_GFLOPS = {'xxs': 0.6, 'xs': 0.8, 's': 1.4, 's_conv': 1.5}
CONFIG = REPO + '/configs/efficientmod/efficientmod-{}_8xb256_in1k.py'


def build_classifier(arch: str):
    return build_model_from_config(
        CONFIG.format(arch.replace('_', '-')), init_weights=False).train()


def converted_state(fixture):
    return convert_released(fixture['checkpoint'])['state_dict']


@pytest.mark.parametrize('arch', ['xxs', 's'])
def test_dense_and_classification_outputs_match_reference(arch):
    fixture = load_parity_fixture(arch)
    classifier = build_classifier(arch).eval()
    missing, unexpected = classifier.load_state_dict(
        converted_state(fixture), strict=False)
    assert not missing and not unexpected
    dense = EfficientMod(arch).eval()
    dense.load_state_dict(classifier.backbone.state_dict(), strict=False)
    with torch.no_grad():
        for x, logits, features in zip(fixture['inputs'], fixture['logits'],
                                       fixture['features']):
            x = x.float()
            torch.testing.assert_close(
                classifier(x, mode='tensor'),
                logits.float(),
                rtol=0,
                atol=1e-4)
            outs = dense(x)
            assert len(outs) == 4
            for out, ref in zip(outs, features):
                assert out.shape == ref.shape
                torch.testing.assert_close(out, ref.float(), rtol=0, atol=1e-4)


@pytest.mark.parametrize('arch', list(PARAMS))
def test_parameter_count_and_flops(arch):
    model = build_classifier(arch).eval()
    assert sum(p.numel() for p in model.parameters()) == PARAMS[arch]

    class Logits(torch.nn.Module):

        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, x):
            return self.model(x, mode='tensor')

    count_flops = load_tool('analysis_tools/get_flops').count_flops
    gflops = count_flops(Logits(), torch.randn(1, 3, 224, 224)) / 1e9
    assert abs(gflops - PAPER_GFLOPS[arch]) <= 0.1 * PAPER_GFLOPS[arch], gflops


@pytest.mark.parametrize('size', [(32, 32), (33, 47), (64, 200), (193, 259)])
def test_any_input_size_from_32(size):
    model = EfficientMod('xxs').eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, *size))
    for out, stride, width in zip(outs, (4, 8, 16, 32), (32, 64, 128, 256)):
        expected = [-(-s // stride) for s in size]
        assert list(out.shape) == [1, width] + expected


def test_custom_arch_dict_and_in_channels():
    arch = dict(
        widths=[16, 32, 48, 64],
        depths=[1, 1, 2, 1],
        attention_depths=[0, 0, 1, 1],
        ratios=[2],
        attention_mlp_ratios=[2, 2, 2, 3])
    model = EfficientMod(arch, in_channels=4, out_indices=(1, -1))
    outs = model(torch.randn(2, 4, 64, 64))
    assert [o.shape[1] for o in outs] == [32, 64]


def test_out_indices_and_classification_feature():
    assert len(EfficientMod('xxs', out_indices=2)(torch.randn(1, 3, 64,
                                                              64))) == 1
    feature, = EfficientMod(
        'xxs', out_indices=-1, out_type='avg_featmap')(
            torch.randn(2, 3, 64, 64))
    assert feature.shape == (2, 256)


@pytest.mark.parametrize('kwargs, message', [
    (dict(arch='tiny'), "Unknown EfficientMod arch 'tiny'"),
    (dict(arch=dict(widths=[8] * 4, depths=[1] * 4)), 'lacks'),
    (dict(
        arch=dict(
            widths=[8] * 3,
            depths=[1] * 4,
            attention_depths=[0] * 4,
            ratios=[1],
            attention_mlp_ratios=[4] * 4)), 'one per stage'),
    (dict(out_indices=(0, 4)), 'out_indices must be in'),
    (dict(frozen_stages=5), 'frozen_stages must be in'),
    (dict(out_type='cls_token'), 'out_type must be one of'),
    (dict(out_type='avg_featmap'), 'out_indices=(3,)'),
])
def test_bad_arguments_name_the_fix(kwargs, message):
    with pytest.raises(
            ValueError, match=message.replace('(', r'\(').replace(')', r'\)')):
        EfficientMod(**kwargs)


@pytest.mark.parametrize('shape', [(1, 1, 64, 64), (1, 4, 64, 64),
                                   (3, 64, 64)])
def test_input_without_three_channels_is_refused(shape):
    with pytest.raises(ValueError, match='expects an N x 3 x H x W'):
        EfficientMod('xxs')(torch.randn(*shape))


def test_frozen_stages_stay_frozen_in_train_mode():
    model = EfficientMod('xxs', frozen_stages=2, drop_path_rate=0.1)
    model.train()
    for name, param in model.named_parameters():
        frozen = name.startswith(('stem.', 'stages.0.', 'stages.1.'))
        assert param.requires_grad != frozen, name
    assert not model.stem.training and not model.stages[1].training
    assert model.stages[2].training
    assert all(
        p.requires_grad
        for p in EfficientMod('xxs', frozen_stages=-1).parameters())


def test_drop_path_grows_linearly_to_the_rate():
    model = EfficientMod('s', drop_path_rate=0.2)
    blocks = [b for stage in model.stages for b in stage.blocks]
    rates = [getattr(b.drop_path, 'drop_prob', 0.) for b in blocks]
    assert rates[0] == 0 and rates[-1] == pytest.approx(0.2)
    assert all(b > a for a, b in zip(rates[1:], rates[2:]))


def test_activation_checkpointing_gives_same_gradients():
    torch.manual_seed(0)
    plain = EfficientMod('xxs')
    plain.init_weights()
    checkpointed = EfficientMod('xxs', with_cp=True)
    checkpointed.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 64, 64)
    for model in (plain, checkpointed):
        sum(o.square().mean() for o in model(x)).backward()
    for (name, a), b in zip(plain.named_parameters(),
                            checkpointed.parameters()):
        torch.testing.assert_close(a.grad, b.grad, msg=name)


def test_default_init_reaches_conv_layers():
    """The reference meant truncated-normal init for Conv2d too, but missed it."""
    torch.manual_seed(0)
    model = EfficientMod('xxs')
    model.init_weights()
    for conv in (model.stem.conv, model.stages[1].downsample.conv):
        assert conv.weight.std().item() == pytest.approx(0.02, rel=0.15)
        assert torch.count_nonzero(conv.bias) == 0
    assert torch.all(model.stem.norm.weight == 1)


def test_layer_depth_for_layer_wise_decay():
    model = EfficientMod('xxs', out_indices=(3, ), out_type='avg_featmap')
    depths = {
        name: model.get_layer_depth('backbone.' + name, 'backbone.')
        for name, _ in model.named_parameters()
    }
    num_layers = sum(len(s.blocks) for s in model.stages) + 2
    assert depths['stem.conv.weight'] == (0, num_layers)
    assert depths['stages.0.blocks.0.norm.weight'] == (1, num_layers)
    assert depths['stages.1.downsample.conv.weight'] == (3, num_layers)
    assert depths['stages.3.blocks.3.ffn.fc2.bias'] == (num_layers - 2,
                                                        num_layers)
    assert depths['norm.weight'] == (num_layers - 1, num_layers)
    assert model.get_layer_depth('head.fc.weight',
                                 'backbone.') == (num_layers - 1, num_layers)
    ids = [depths[n][0] for n, _ in model.named_parameters()]
    assert ids == sorted(ids)


@pytest.mark.parametrize('scope', ['mmdet', 'mmseg', 'mmpretrain'])
def test_builds_under_every_library_scope(scope):
    init_default_scope(scope)
    model = MODELS.build(dict(type='EfficientMod', arch='xs'))
    assert isinstance(model, EfficientMod)


def test_pretrained_init_takes_an_upstream_checkpoint(tmp_path):
    fixture = load_parity_fixture('xxs')
    upstream = tmp_path / 'released.pth'
    torch.save(fixture['checkpoint'], upstream)
    model = EfficientMod(
        'xxs', init_cfg=dict(type='Pretrained', checkpoint=str(upstream)))
    model.init_weights()
    model.eval()
    with torch.no_grad():
        out = model(fixture['inputs'][1].float())
    torch.testing.assert_close(
        out[3], fixture['features'][1][3].float(), rtol=0, atol=1e-4)


def test_pretrained_init_takes_a_converted_checkpoint_with_prefix(tmp_path):
    fixture = load_parity_fixture('xxs')
    converted = tmp_path / 'converted.pth'
    torch.save(convert_released(fixture['checkpoint']), converted)
    model = EfficientMod(
        'xxs',
        init_cfg=dict(
            type='Pretrained', checkpoint=str(converted), prefix='backbone.'))
    model.init_weights()
    model.eval()
    with torch.no_grad():
        out = model(fixture['inputs'][0].float())
    torch.testing.assert_close(
        out[0], fixture['features'][0][0].float(), rtol=0, atol=1e-4)
