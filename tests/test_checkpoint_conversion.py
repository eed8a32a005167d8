"""Converting released EfficientMod checkpoints (tools/model_converters/efficientmod_to_mm.py)."""
import os.path as osp
import subprocess
import sys

import pytest
import torch
from parity import ARCHS, REPO, load_parity_fixture, upstream_shapes

from mmefficientmod.checkpoint import (NotEfficientModCheckpoint,
                                       convert_released, infer_arch,
                                       released_weights, strip_prefix)
from mmefficientmod.models import build_model_from_config

CONVERTER = REPO + '/tools/model_converters/efficientmod_to_mm.py'
CLS_CONFIG = REPO + '/configs/efficientmod/efficientmod-{}_8xb256_in1k.py'
DET_CONFIG = REPO + '/configs/mask_rcnn/mask-rcnn_efficientmod-{}_fpn_1x_coco.py'
SEG_CONFIG = REPO + '/configs/sem_fpn/fpn_efficientmod-{}_8xb4-40k_ade20k-512x512.py'


def build(config: str):
    return build_model_from_config(config, init_weights=False)


def released_imagenet_checkpoint(arch: str) -> dict:
    """A checkpoint with every key and shape of the released one of ``arch``."""
    generator = torch.Generator().manual_seed(0)
    return {
        'model': {
            k: torch.randn(s, generator=generator)
            for k, s in upstream_shapes(arch).items()
        }
    }


@pytest.mark.parametrize('arch', ARCHS)
def test_every_released_key_maps_into_the_classifier(arch):
    released = released_imagenet_checkpoint(arch)
    converted = convert_released(released)
    assert converted['meta']['arch'] == arch
    model = build(CLS_CONFIG.format(arch.replace('_', '-')))
    model.load_state_dict(converted['state_dict'], strict=True)
    torch.testing.assert_close(model.head.fc.weight,
                               released['model']['head.weight'])
    torch.testing.assert_close(model.backbone.stem.conv.weight,
                               released['model']['patch_embed.proj.weight'])


@pytest.mark.e2e
def test_cli_converts_the_parity_checkpoint(tmp_path):
    fixture = load_parity_fixture('xxs')
    src, dst = tmp_path / 'released.pth', tmp_path / 'out' / 'converted.pth'
    torch.save(fixture['checkpoint'], src)
    result = subprocess.run(
        [sys.executable, CONVERTER,
         str(src), str(dst)],
        capture_output=True,
        text=True,
        check=True)
    assert 'EfficientMod-xxs classification checkpoint' in result.stdout
    converted = torch.load(dst, weights_only=True)
    model = build(CLS_CONFIG.format('xxs'))
    model.load_state_dict(converted['state_dict'], strict=True)
    with torch.no_grad():
        logits = model(fixture['inputs'][0].float(), mode='tensor')
    torch.testing.assert_close(
        logits, fixture['logits'][0].float(), rtol=0, atol=1e-4)
    again = subprocess.run(
        [sys.executable, CONVERTER,
         str(src), str(dst)],
        capture_output=True,
        text=True)
    assert again.returncode != 0 and '--force' in again.stderr


def test_ema_weights_are_picked_on_request():
    released = released_imagenet_checkpoint('xxs')
    released['state_dict_ema'] = {
        k: v + 1
        for k, v in released['model'].items()
    }
    plain = convert_released(released)['state_dict']
    ema = convert_released(released, use_ema=True)
    assert ema['meta']['ema']
    torch.testing.assert_close(ema['state_dict']['head.fc.bias'],
                               plain['head.fc.bias'] + 1)
    with pytest.raises(NotEfficientModCheckpoint, match="no 'state_dict_ema'"):
        convert_released(released_imagenet_checkpoint('xxs'), use_ema=True)


def released_dense_checkpoint(model, arch: str) -> dict:
    """A mmdet 2.x / mmseg 0.x style checkpoint of ``model`` with the released backbone keys."""
    backbone = {
        'backbone.' + k: v
        for k, v in released_imagenet_checkpoint(arch)['model'].items()
        if not k.startswith(('head.', 'norm.'))
    }
    others = {
        k: v
        for k, v in model.state_dict().items() if not k.startswith('backbone.')
    }
    return {
        'state_dict': {
            **backbone,
            **others
        },
        'meta': {
            'mmdet_version': '2.19.0'
        }
    }


@pytest.mark.parametrize('arch', ['xxs', 's_conv'])
@pytest.mark.parametrize('config, task', [(DET_CONFIG, 'detection'),
                                          (SEG_CONFIG, 'segmentation')])
def test_released_dense_checkpoints_load_into_detector_and_segmentor(
        arch, config, task):
    model = build(config.format(arch.replace('_', '-')))
    released = released_dense_checkpoint(model, arch)
    converted = convert_released(released)
    assert converted['meta'] == dict(
        arch=arch,
        task=task,
        ema=False,
        converted_from='upstream EfficientMod')
    model.load_state_dict(converted['state_dict'], strict=True)
    torch.testing.assert_close(
        model.backbone.stages[1].downsample.conv.weight,
        released['state_dict']['backbone.layers.0.downsample.proj.weight'])


@pytest.mark.parametrize('checkpoint, message', [
    ({
        'foo': torch.zeros(1)
    }, "found \\['foo'\\]"),
    ({
        'model': {
            'conv1.weight': torch.zeros(64, 3, 7, 7)
        }
    }, "found \\['model'\\]"),
    ({
        'state_dict': {
            'backbone.conv1.weight': torch.zeros(1)
        }
    }, "found \\['state_dict'\\]"),
    (torch.zeros(3), 'found a Tensor'),
])
def test_foreign_checkpoints_are_refused_with_what_was_found(
        checkpoint, message):
    with pytest.raises(NotEfficientModCheckpoint, match=message):
        convert_released(checkpoint)


def test_unknown_widths_are_named():
    released = released_imagenet_checkpoint('xxs')
    released['model']['patch_embed.proj.weight'] = torch.zeros(24, 3, 7, 7)
    assert convert_released(released)['meta']['arch'] == \
        'custom (widths [24, 64, 128, 256])'
    with pytest.raises(
            NotEfficientModCheckpoint, match='No EfficientMod stem'):
        infer_arch({})


@pytest.mark.e2e
def test_cli_refuses_missing_and_non_checkpoint_files(tmp_path):
    text = tmp_path / 'notes.txt'
    text.write_text('not a checkpoint')
    for src, message in [(tmp_path / 'absent.pth', 'does not exist'),
                         (text, 'notes.txt: it is a text file')]:
        result = subprocess.run(
            [sys.executable, CONVERTER,
             str(src),
             str(tmp_path / 'o.pth')],
            capture_output=True,
            text=True)
        assert result.returncode != 0 and message in result.stderr
        assert not (tmp_path / 'o.pth').exists()


def test_strip_prefix_keeps_or_drops_the_other_keys():
    sd = {'module.a': 1, 'module.b.module.c': 2, 'steps': 3}
    assert strip_prefix(sd) == {'a': 1, 'b.module.c': 2, 'steps': 3}
    assert strip_prefix(sd, drop_others=True) == {'a': 1, 'b.module.c': 2}
    assert strip_prefix(sd, 'backbone.', drop_others=True) == {}
    assert strip_prefix(sd, '') == sd
    # A DDP-wrapped released checkpoint is recognised through the helper.
    released = released_imagenet_checkpoint('xxs')['model']
    wrapped = {'model': {'module.' + k: v for k, v in released.items()}}
    assert released_weights(wrapped)
    assert convert_released(wrapped)['state_dict'].keys() == \
        convert_released({'model': released})['state_dict'].keys()


def _convert(load_tool, monkeypatch, *argv):
    """Run the converter in-process; its error message, or None."""
    tool = load_tool('model_converters/efficientmod_to_mm')
    monkeypatch.setattr(sys, 'argv', ['efficientmod_to_mm.py', *argv])
    try:
        tool.main()
    except SystemExit as exit:
        return str(exit.code)
    return None


def test_converter_names_every_bad_input(tmp_path, load_tool, monkeypatch):
    import zipfile
    released = released_imagenet_checkpoint('xxs')
    good = tmp_path / 'released.pth'
    torch.save(released, good)
    ema_only = tmp_path / 'ema_only.pth'
    torch.save({'state_dict_ema': released['model']}, ema_only)
    nan = tmp_path / 'nan.pth'
    torch.save(
        {
            'model': {
                **released['model'], 'head.bias':
                torch.full((1000, ), float('nan'))
            }
        }, nan)
    ints = tmp_path / 'ints.pth'
    torch.save(
        {
            'model': {
                **released['model'], 'head.bias':
                torch.zeros(1000, dtype=torch.int64)
            }
        }, ints)
    loop = tmp_path / 'loop.pth'
    loop.symlink_to(loop)
    escaping = tmp_path / 'escaping.pth'
    with zipfile.ZipFile(escaping, 'w') as archive:
        archive.writestr('../evil/data.pkl', b'x')
    a_file = tmp_path / 'a_file'
    a_file.write_text('x')
    out = str(tmp_path / 'out.pth')
    for argv, expected in [
        ((str(loop), out), 'cannot be read'),
        ((str(tmp_path), out), 'is a directory: give the checkpoint'),
        ((str(good), str(tmp_path)), 'is a directory: give the file'),
        ((str(good), str(a_file / 'out.pth')), 'is a file'),
        ((str(good), str(good), '--force'), 'is SRC itself'),
        ((str(ema_only), out), 'convert it with --ema'),
        ((str(nan), out), 'non-finite values in head.fc.bias'),
        ((str(ints), out), 'torch.int64'),
        ((str(escaping), out), 'entry outside it'),
    ]:
        message = _convert(load_tool, monkeypatch, *argv)
        assert message and expected in message, (argv, message)
    assert not osp.exists(out)
    assert list(tmp_path.glob('*.tmp*')) == []
    assert _convert(load_tool, monkeypatch, str(ema_only), out, '--ema') \
        is None
    assert torch.load(out, weights_only=True)['meta']['ema']
