"""Bad checkpoints through the tools people run, with this project's
configs: the libraries' own tools/test.py (mmdet, mmseg, mmpretrain), their
inferencers and ``get_model`` (mmengine's warning, unless the backbone's own
weights are of another arch), our tools/test.py and tools/train.py
(load_from, --resume), the converter; and the command-line switch of the
embedded configs to pretrained weights."""
import glob
import os
import os.path as osp
import sys

import mmdet
import mmpretrain
import mmseg
import pytest
import torch
from _detseg_utils import (DET_EMBEDDED, REPO, SEG_EMBEDDED, run,
                           tiny_det_config, tiny_seg_config)

from mmefficientmod import EfficientMod
from mmefficientmod.checkpoint import CheckpointMismatchError
from mmefficientmod.checkpoint.bad_files import UnreadableCheckpointError
from mmefficientmod.models.from_config import build_model_from_config

pytestmark = pytest.mark.e2e

CLASSIFIER = osp.join(REPO, 'configs', 'efficientmod',
                      'efficientmod-xxs_1xb32_embedded-64px.py')
LIBRARY_TOOLS = {
    name: osp.join(osp.dirname(package.__file__), '.mim', 'tools', 'test.py')
    for name, package in (('mmdet', mmdet), ('mmseg', mmseg), ('mmpretrain',
                                                               mmpretrain))
}


def _save(path, state_dict):
    torch.save({'state_dict': state_dict, 'meta': {}}, path)
    return str(path)


@pytest.fixture(scope='module')
def setup(tmp_path_factory, tiny_data, embedded_imagenet):
    """Tiny configs of the three tasks and checkpoints that do not fit
    them: a classifier's (for the detector and the segmentor) and an
    EfficientMod-s detector's (for the classifier)."""
    root = tmp_path_factory.mktemp('bad_ckpt')
    coco, ade = tiny_data
    configs = dict(
        mmdet=tiny_det_config(str(root), coco),
        mmseg=tiny_seg_config(str(root), ade),
        mmpretrain=CLASSIFIER)
    classifier = build_model_from_config(CLASSIFIER).state_dict()
    s_backbone = {
        f'backbone.{k}': v
        for k, v in EfficientMod('s').state_dict().items()
    }
    return dict(
        root=root,
        configs=configs,
        imagenet=embedded_imagenet,
        classifier=_save(root / 'classifier.pth', classifier),
        other_arch=_save(root / 's_backbone.pth', s_backbone),
        empty=_save(root / 'placeholder.pth', {}))


def _data_options(setup, library):
    if library != 'mmpretrain':
        return []
    return [
        f'{split}_dataloader.dataset.data_root={setup["imagenet"]}'
        for split in ('train', 'val', 'test')
    ]


def _unfit_checkpoint(setup, library):
    return setup['other_arch' if library == 'mmpretrain' else 'classifier']


@pytest.mark.parametrize('library', ['mmdet', 'mmseg', 'mmpretrain'])
def test_library_test_tool_refuses_a_checkpoint_that_does_not_fit(
        setup, library):
    tool = LIBRARY_TOOLS[library]
    if not osp.isfile(tool):
        pytest.skip(f'this {library} installation ships no .mim/tools')
    checkpoint = _unfit_checkpoint(setup, library)
    args = [
        setup['configs'][library], checkpoint, '--work-dir',
        str(setup['root'] / f'work_{library}')
    ]
    options = _data_options(setup, library)
    if options:
        args += ['--cfg-options', *options]
    proc = run([sys.executable, tool, *args], check=False)
    out = proc.stdout
    assert proc.returncode != 0
    assert 'CheckpointMismatchError' in out, out[-3000:]
    assert checkpoint in out
    if library == 'mmpretrain':
        assert 'EfficientMod-s backbone alone' in out
    else:
        assert 'EfficientMod-xxs image classifier' in out
    assert '--allow-partial-checkpoint' in out
    assert 'Epoch(test)' not in out  # nothing was scored


def test_our_test_tool_refuses_and_allows_on_purpose(setup, load_tool):
    test = load_tool('test')
    config = setup['configs']['mmseg']
    work = str(setup['root'] / 'work_ours')
    with pytest.raises(CheckpointMismatchError, match='image classifier'):
        test.main([config, setup['classifier'], '--work-dir', work])
    metrics = test.main([
        config, setup['classifier'], '--work-dir', work,
        '--allow-partial-checkpoint'
    ])
    assert 'mIoU' in metrics


def test_our_test_tool_names_an_empty_file(setup, load_tool, tmp_path):
    path = tmp_path / 'download.pth'
    path.write_bytes(b'')
    with pytest.raises(UnreadableCheckpointError, match='empty file'):
        load_tool('test').main([setup['configs']['mmdet'], str(path)])


def test_detection_inferencer(setup, tmp_path):
    """mmengine's behaviour: what fits loads, the rest is listed."""
    from mmdet.apis import DetInferencer
    inferencer = DetInferencer(DET_EMBEDDED, setup['classifier'], device='cpu')
    loaded = torch.load(setup['classifier'])['state_dict']
    assert torch.equal(inferencer.model.backbone.stem.conv.weight,
                       loaded['backbone.stem.conv.weight'])
    html = tmp_path / 'page.pth'
    html.write_bytes(b'<html><body>404</body></html>')
    with pytest.raises(UnreadableCheckpointError, match='HTML page'):
        DetInferencer(DET_EMBEDDED, str(html), device='cpu')


def test_segmentation_inferencer_refuses_another_arch(setup):
    from mmseg.apis import MMSegInferencer
    with pytest.raises(CheckpointMismatchError, match='EfficientMod-s'):
        MMSegInferencer(SEG_EMBEDDED, setup['other_arch'], device='cpu')


def test_classification_inferencer_and_get_model(setup):
    from mmpretrain import ImageClassificationInferencer, get_model
    with pytest.raises(CheckpointMismatchError, match='EfficientMod-s'):
        ImageClassificationInferencer(
            CLASSIFIER, pretrained=setup['other_arch'], device='cpu')
    model = get_model(CLASSIFIER, pretrained=setup['classifier'])
    assert model.backbone.arch_settings['widths'][0] == 32


def _classifier_options(setup, *extra):
    return [
        '--cfg-options', *_data_options(setup, 'mmpretrain'),
        'train_dataloader.batch_size=8', *extra
    ]


def _log_text(work):
    return ''.join(
        open(path).read() for path in glob.glob(osp.join(work, '*', '*.log')))


def test_training_load_from_warns_once_and_trains(setup, load_tool):
    work = str(setup['root'] / 'work_load_from')
    backbone_only = _save(setup['root'] / 'xxs_backbone.pth', {
        f'backbone.{k}': v
        for k, v in EfficientMod('xxs').state_dict().items()
    })
    load_tool('train').main([
        CLASSIFIER, '--work-dir', work, *_classifier_options(
            setup, 'train_cfg.max_epochs=1', f'load_from={backbone_only}')
    ])
    log = _log_text(work)
    lines = [
        line for line in log.splitlines()
        if 'Training from the checkpoint' in line
    ]
    assert len(lines) == 1, log[-3000:]
    assert 'EfficientMod-xxs backbone alone' in lines[0]
    assert 'keeps its initial values' in lines[0]
    assert osp.isfile(osp.join(work, 'epoch_1.pth'))


def _truncate(path):
    with open(path, 'r+b') as f:
        f.truncate(os.path.getsize(path) // 2)


def test_resume_falls_back_to_the_newest_complete_checkpoint(setup, load_tool):
    train = load_tool('train')
    work = str(setup['root'] / 'work_resume')
    keep = [
        'default_hooks.checkpoint.interval=1',
        'default_hooks.checkpoint.max_keep_ckpts=3'
    ]
    train.main([
        CLASSIFIER, '--work-dir', work,
        *_classifier_options(setup, 'train_cfg.max_epochs=2', *keep)
    ])
    latest = osp.join(work, 'epoch_2.pth')
    _truncate(latest)
    # An explicit unreadable checkpoint: stop, naming the one to pass.
    with pytest.raises(UnreadableCheckpointError) as info:
        train.main([
            CLASSIFIER, '--work-dir', work, '--resume', latest,
            *_classifier_options(setup, 'train_cfg.max_epochs=3', *keep)
        ])
    assert f'--resume {osp.join(work, "epoch_1.pth")}' in str(info.value)
    # The latest found by --resume: fall back, in one line.
    train.main([
        CLASSIFIER, '--work-dir', work, '--resume',
        *_classifier_options(setup, 'train_cfg.max_epochs=3', *keep)
    ])
    log = _log_text(work)
    assert 'resuming from' in log and 'epoch_1.pth, the newest complete' \
        in log, log[-3000:]
    assert osp.isfile(osp.join(work, 'epoch_3.pth'))
    # Without the last_checkpoint record: the newest complete one, too.
    os.remove(osp.join(work, 'last_checkpoint'))
    train.main([
        CLASSIFIER, '--work-dir', work, '--resume',
        *_classifier_options(setup, 'train_cfg.max_epochs=4', *keep)
    ])
    assert 'no last_checkpoint record; resuming from ' in _log_text(work)
    assert osp.isfile(osp.join(work, 'epoch_4.pth'))
    # Training anew over them is refused, unless asked for.
    with pytest.raises(FileExistsError, match='start_over=True'):
        train.main([
            CLASSIFIER, '--work-dir', work,
            *_classifier_options(setup, 'train_cfg.max_epochs=1', *keep)
        ])
    # mmpretrain's own tools/train.py --resume, with the same config.
    tool = osp.join(
        osp.dirname(mmpretrain.__file__), '.mim', 'tools', 'train.py')
    if not osp.isfile(tool):
        return
    # (the run above saved epoch_2.pth anew, complete)
    _truncate(osp.join(work, 'epoch_4.pth'))
    proc = run([
        sys.executable, tool, CLASSIFIER, '--work-dir', work, '--resume',
        *_classifier_options(setup, 'train_cfg.max_epochs=5', *keep)
    ])
    assert 'epoch_3.pth, the newest complete checkpoint' in proc.stdout, \
        proc.stdout[-3000:]
    assert osp.isfile(osp.join(work, 'epoch_5.pth'))


def test_converter_names_bad_files(tmp_path):
    for name, content in (('empty', b''), ('page', b'<!doctype html>')):
        src = tmp_path / f'{name}.pth'
        src.write_bytes(content)
        proc = run([
            sys.executable, 'tools/model_converters/efficientmod_to_mm.py',
            str(src),
            str(tmp_path / 'out.pth')
        ],
                   check=False)
        assert proc.returncode != 0
        assert 'Traceback' not in proc.stdout, proc.stdout
        assert str(src) in proc.stdout and 'again' in proc.stdout


@pytest.mark.parametrize('config', [DET_EMBEDDED, SEG_EMBEDDED])
def test_embedded_configs_switch_to_a_checkpoint_from_the_command_line(
        config, tmp_path):
    """The configs' comments: --cfg-options model.backbone.init_cfg.type=
    Pretrained model.backbone.init_cfg.checkpoint=CKPT, as mmengine's own
    option parser (the libraries' tools) reads it; our tools also take
    the dict(...) form."""
    import argparse

    from mmengine.config import Config, DictAction
    trained = EfficientMod('xxs')
    path = _save(tmp_path / 'in1k.pth', {
        f'backbone.{k}': v
        for k, v in trained.state_dict().items()
    })
    parser = argparse.ArgumentParser()
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    args = parser.parse_args([
        '--cfg-options', 'model.backbone.init_cfg.type=Pretrained',
        f'model.backbone.init_cfg.checkpoint={path}'
    ])
    cfg = Config.fromfile(config)
    cfg.merge_from_dict(args.cfg_options)
    model = build_model_from_config(cfg)
    model.init_weights()
    assert torch.equal(model.backbone.stem.conv.weight,
                       trained.stem.conv.weight)

    sys.path.insert(0, osp.join(REPO, 'tools'))
    try:
        from _runner_utils import add_runner_arguments, load_config
    finally:
        sys.path.pop(0)
    parser = argparse.ArgumentParser()
    add_runner_arguments(parser, '')
    args = parser.parse_args([
        config, '--cfg-options',
        f"model.backbone.init_cfg=dict(type='Pretrained',checkpoint='{path}')"
    ])
    args.launcher = 'none'
    cfg = load_config(args)
    assert dict(cfg.model.backbone.init_cfg) == dict(
        type='Pretrained', checkpoint=path)
