"""tools/misc/check_dataset.py on the tiny embedded datasets, clean and with
injected faults."""
import json
import os
import os.path as osp
import shutil

import numpy as np
import pytest
from _detseg_utils import REPO, tiny_det_config, tiny_seg_config
from PIL import Image

CLASSIFIER = osp.join(REPO, 'configs', 'efficientmod',
                      'efficientmod-xxs_1xb32_embedded-64px.py')


@pytest.fixture
def check(load_tool, capsys):
    """``check(config, *options) -> (exit status, output)``."""
    tool = load_tool('misc/check_dataset')

    def run(config, *options):
        args = [config] + (['--cfg-options', *options] if options else [])
        status = tool.main(args)
        return status, capsys.readouterr().out

    return run


def test_clean_datasets_pass(check, tiny_data, embedded_imagenet, tmp_path):
    coco, ade = tiny_data
    for config in (tiny_det_config(tmp_path,
                                   coco), tiny_seg_config(tmp_path, ade)):
        status, out = check(config)
        assert status == 0 and out.startswith('check_dataset: OK'), out
    status, out = check(CLASSIFIER, *data_roots(embedded_imagenet))
    assert status == 0 and 'train, val, test' in out, out


def data_roots(root):
    return [
        f'{s}_dataloader.dataset.data_root={root}'
        for s in ('train', 'val', 'test')
    ]


def test_coco_faults_are_listed(check, tiny_data, tmp_path):
    coco = str(tmp_path / 'coco')
    shutil.copytree(tiny_data[0], coco)
    ann_file = osp.join(coco, 'annotations', 'instances_train2017.json')
    with open(ann_file) as f:
        data = json.load(f)
    del data['images'][0]['height']
    anns = data['annotations']
    first, out_, zero, unknown = [0] + [
        i for i, a in enumerate(anns) if a['image_id'] != 1
    ][:3]
    del anns[first]['bbox']
    anns[out_]['bbox'] = [500, 500, 10, 10]
    anns[zero]['bbox'][2] = 0
    anns[unknown]['category_id'] = 9
    with open(ann_file, 'w') as f:
        json.dump(data, f)
    broken = osp.join(coco, 'val2017', '000000000009.jpg')
    with open(broken, 'r+b') as f:
        f.truncate(200)

    status, out = check(tiny_det_config(tmp_path, coco))
    assert status == 1, out

    def entry(i):
        return f'annotations[{i}] (id {anns[i]["id"]}, ' \
            f'image {anns[i]["image_id"]}): '

    expected = [
        f'{ann_file}: 5 problem(s)', 'images[0] (id 1): missing height',
        entry(first) + 'missing bbox',
        entry(out_) + 'bbox [500, 500, 10, 10] lies entirely outside its '
        '160x160 image',
        entry(zero) + 'bbox', 'has zero area',
        entry(unknown) + "category id 9 is not in the file's categories",
        f'{broken}: 1 problem(s)', 'does not open as an image',
        'check_dataset: 6 problem(s) in 2 file(s)'
    ]
    for line in expected:
        assert line in out, f'{line!r} not in:\n{out}'


def test_segmentation_label_beyond_the_classes_is_listed(
        check, tiny_data, tmp_path):
    ade = str(tmp_path / 'ade20k')
    shutil.copytree(tiny_data[1], ade)
    seg_map = osp.join(ade, 'annotations', 'training',
                       'ADE_train_00000002.png')
    labels = np.array(Image.open(seg_map))
    labels[:4, :4] = 10  # 9 after reduce_zero_label; 4 classes
    labels[4:8, :4] = 0  # 255 after it: ignored, not a problem
    Image.fromarray(labels).save(seg_map)

    status, out = check(tiny_seg_config(tmp_path, ade))
    assert status == 1, out
    assert f'{seg_map}: 1 problem(s)' in out, out
    assert ('label ids [9] (after reduce_zero_label=True) are not below '
            'num_classes=4') in out, out


def test_classification_label_and_image_faults_are_listed(
        check, embedded_imagenet, tmp_path):
    root = str(tmp_path / 'imagenet')
    shutil.copytree(embedded_imagenet, root)
    meta = osp.join(root, 'meta', 'train.txt')
    with open(meta) as f:
        lines = f.readlines()
    lines[1] = lines[1].split()[0] + ' 7\n'
    with open(meta, 'w') as f:
        f.writelines(lines)
    with open(osp.join(root, 'meta', 'val.txt')) as f:
        missing = osp.join(root, 'val', f.readlines()[2].split()[0])
    os.remove(missing)

    status, out = check(CLASSIFIER, *data_roots(root))
    assert status == 1, out
    assert f'{meta}: 1 problem(s)' in out, out
    assert 'label 7 is outside 0..3 (4 classes)' in out, out
    assert f'{missing}: 1 problem(s)' in out and 'file not found' in out


def test_missing_data_is_listed_not_raised(check, tmp_path):
    nowhere = str(tmp_path / 'nowhere')
    status, out = check(tiny_seg_config(tmp_path, nowhere))
    assert status == 1, out
    assert f"cannot be read ([Errno 2] No such file or directory: " \
        f"'{nowhere}/images/training')" in out, out
