"""Bad input to tools/train.py and tools/test.py: a clear error naming the
problem (or the documented skip).

* missing image file: FileNotFoundError naming the file; documented skip:
  ``LoadImageFromFile(ignore_empty=True)`` trains on without it;
* corrupt image: error naming the file;
* empty (0-byte) annotation file: error naming the file (tools' check);
* annotation file without any annotation: error that the dataset is empty
  (stack fix);
* class count in the config different from the dataset's: error naming the
  heads and the fix (tools' check);
* missing checkpoint for tools/test.py: error naming it (other bad
  checkpoints: test_bad_checkpoint_files.py, test_bad_inputs_e2e.py).

The tools run in this process (``main(argv)``) to keep the test fast.
"""
import json
import os
import shutil

import pytest
import torch
from _detseg_utils import tiny_det_config, tiny_seg_config, write_config

# Trains models or starts tools in subprocesses.
pytestmark = pytest.mark.e2e


@pytest.fixture(scope='module')
def setup(tmp_path_factory, tiny_data, load_tool):
    root = tmp_path_factory.mktemp('bad')
    coco, ade = tiny_data
    return dict(
        root=root,
        coco=coco,
        ade=ade,
        train=load_tool('train'),
        test=load_tool('test'))


def _copy(src, dst):
    shutil.copytree(src, dst)
    return str(dst)


def _det_cfg(setup, coco, name, loader_extra=''):
    """Tiny detection config on ``coco``; ``loader_extra`` adds fields to
    ``train_dataloader`` (one assignment per name in a config file)."""
    directory = setup['root'] / f'cfg_{name}'
    directory.mkdir()
    body = f'''
train_cfg = dict(max_epochs=1, val_interval=100)
# First image first, so a problem with it shows in the first step.
train_dataloader = dict(sampler=dict(shuffle=False){loader_extra})
'''
    return write_config(directory / f'{name}.py',
                        tiny_det_config(str(directory), coco), body)


def _seg_cfg(setup, ade, name):
    directory = setup['root'] / f'cfg_{name}'
    directory.mkdir()
    body = 'train_cfg = dict(max_iters=1, val_interval=100)\n'
    return write_config(directory / f'{name}.py',
                        tiny_seg_config(str(directory), ade), body)


def _train(setup, cfg, *extra):
    work = str(setup['root'] / 'work' / os.path.basename(str(cfg))[:-3])
    setup['train'].main([cfg, '--work-dir', work, *extra])
    return work


def _first_train_image(coco):
    with open(os.path.join(coco, 'annotations',
                           'instances_train2017.json')) as f:
        images = json.load(f)['images']
    return os.path.join(coco, 'train2017', images[0]['file_name'])


def test_missing_image_is_a_clear_error(setup):
    coco = _copy(setup['coco'], setup['root'] / 'missing')
    missing = _first_train_image(coco)
    os.remove(missing)
    cfg = _det_cfg(setup, coco, 'missing')
    with pytest.raises(FileNotFoundError, match=os.path.basename(missing)):
        _train(setup, cfg)


def test_missing_image_documented_skip(setup):
    coco = _copy(setup['coco'], setup['root'] / 'missing_skip')
    os.remove(_first_train_image(coco))
    cfg = _det_cfg(
        setup, coco, 'missing_skip', ''', dataset=dict(pipeline=[
    dict(type='LoadImageFromFile', ignore_empty=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=(128, 128), keep_ratio=True),
    dict(type='PackDetInputs'),
])''')
    work = _train(setup, cfg)
    assert os.path.isfile(os.path.join(work, 'epoch_1.pth'))


def test_corrupt_image_is_a_clear_error(setup):
    ade = _copy(setup['ade'], setup['root'] / 'corrupt')
    img_dir = os.path.join(ade, 'images', 'training')
    for name in os.listdir(img_dir):  # every image: the first step fails
        with open(os.path.join(img_dir, name), 'wb') as f:
            f.write(b'this is not a jpeg' * 10)
    cfg = _seg_cfg(setup, ade, 'corrupt')
    with pytest.raises(AssertionError, match=r'failed to load image: .*\.jpg'):
        _train(setup, cfg)


def test_empty_annotation_file_is_a_clear_error(setup):
    coco = _copy(setup['coco'], setup['root'] / 'empty_ann')
    ann = os.path.join(coco, 'annotations', 'instances_train2017.json')
    open(ann, 'w').close()
    cfg = _det_cfg(setup, coco, 'empty_ann')
    with pytest.raises(ValueError, match=r'instances_train2017.json is empty'):
        _train(setup, cfg)


def test_annotation_file_without_annotations_is_a_clear_error(setup):
    coco = _copy(setup['coco'], setup['root'] / 'no_ann')
    ann = os.path.join(coco, 'annotations', 'instances_train2017.json')
    with open(ann) as f:
        content = json.load(f)
    content['annotations'] = []
    with open(ann, 'w') as f:
        json.dump(content, f)
    cfg = _det_cfg(setup, coco, 'no_ann')
    with pytest.raises(
            ValueError, match=r'CocoDataset is empty.*filter_empty'):
        _train(setup, cfg)


@pytest.mark.parametrize('task', ['det', 'seg'])
def test_class_count_mismatch_is_a_clear_error(setup, task):
    if task == 'det':
        cfg = _det_cfg(setup, setup['coco'], 'classes_det')
        options = [
            'model.roi_head.bbox_head.num_classes=5',
            'model.roi_head.mask_head.num_classes=5'
        ]
        expected = r'model.roi_head.bbox_head.num_classes=5.*3 classes'
    else:
        cfg = _seg_cfg(setup, setup['ade'], 'classes_seg')
        options = ['model.decode_head.num_classes=3']
        expected = r'model.decode_head.num_classes=3.*4 classes'
    with pytest.raises(ValueError, match=r'Class count mismatch') as info:
        _train(setup, cfg, '--cfg-options', *options)
    import re
    assert re.search(expected, str(info.value))
    assert '--cfg-options' in str(info.value)  # names the fix


def test_missing_checkpoint_for_test_tool(setup):
    cfg = _seg_cfg(setup, setup['ade'], 'no_ckpt')
    with pytest.raises(SystemExit, match='Checkpoint not found'):
        setup['test'].main([cfg, str(setup['root'] / 'nope.pth')])


def test_missing_annotation_file_for_test_tool(setup):
    coco = _copy(setup['coco'], setup['root'] / 'no_val')
    os.remove(os.path.join(coco, 'annotations', 'instances_val2017.json'))
    cfg = _det_cfg(setup, coco, 'no_val')
    ckpt = setup['root'] / 'dummy.pth'
    torch.save({'state_dict': {}}, ckpt)  # read only after the data check
    with pytest.raises(
            FileNotFoundError,
            match=r'test annotation file .*instances_val2017'):
        setup['test'].main([cfg, str(ckpt)])
