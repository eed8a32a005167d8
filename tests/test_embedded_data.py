"""The embedded datasets must be real COCO / ADE20K / ImageNet data for the
stock OpenMMLab loaders, deterministic, and cheap to re-request."""
import os
import os.path as osp
import subprocess
import sys

import cv2
import numpy as np
import pytest
from _detseg_utils import REPO, load_tool
from pycocotools.coco import COCO

synthetic_data = load_tool('dataset_converters/synthetic_data')
ADE_CLASSES, COCO_CLASSES = synthetic_data.ADE_CLASSES, synthetic_data.COCO_CLASSES
IMAGENET_CLASSES = synthetic_data.IMAGENET_CLASSES
make_coco = synthetic_data.make_coco

SMALL = dict(
    coco=dict(num_train=6, num_val=4, img_size=(128, 96)),
    ade20k=dict(num_train=3, num_val=2, img_size=(96, 128)),
    imagenet=dict(num_per_class_train=2, num_per_class_val=1, img_size=32))


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    """Default-sized datasets, generated once for the read-only tests."""
    root = tmp_path_factory.mktemp('embedded')
    return make_all(str(root))


def make_all(root, seed=0, **kwargs):
    """The three datasets under ``root/{coco,ade20k,imagenet}``; ``kwargs``
    maps a dataset name to keyword overrides of its ``make_*``."""
    return {
        name:
        getattr(synthetic_data, f'make_{name}')(
            osp.join(root, name), seed=seed, **kwargs.get(name, {}))
        for name in ('coco', 'ade20k', 'imagenet')
    }


def _tree_bytes(root):
    """Relative path -> content of every file under ``root``."""
    files = {}
    for dirpath, _, names in os.walk(root):
        for name in names:
            path = osp.join(dirpath, name)
            with open(path, 'rb') as f:
                files[osp.relpath(path, root)] = f.read()
    return files


def test_make_all_summary_and_no_leftovers(data):
    root = osp.dirname(data['coco']['root'])
    assert sorted(os.listdir(root)) == ['ade20k', 'coco', 'imagenet']
    assert all(summary['generated'] for summary in data.values())
    coco = data['coco']['splits']
    assert coco['train']['num_images'] == 64
    assert coco['val']['num_images'] == 16
    assert data['ade20k']['splits']['train']['num_images'] == 64
    assert data['imagenet']['splits']['val']['num_images'] == 16
    assert data['ade20k']['classes'] == list(ADE_CLASSES)


def test_coco_json_has_all_annotation_kinds(data):
    root = data['coco']['root']
    for split, num in (('train', 64), ('val', 16)):
        coco = COCO(osp.join(root, f'annotations/instances_{split}2017.json'))
        assert len(coco.getImgIds()) == num
        assert [c['name']
                for c in coco.loadCats(coco.getCatIds())] == list(COCO_CLASSES)
        assert coco.getCatIds() == [1, 2, 3]
        anns = coco.loadAnns(coco.getAnnIds())
        segms = [a['segmentation'] for a in anns]
        assert any(isinstance(s, list) for s in segms)
        assert any(
            isinstance(s, dict) and isinstance(s['counts'], str)
            for s in segms)
        assert any(
            isinstance(s, dict) and isinstance(s['counts'], list)
            for s in segms)
        assert any(a['iscrowd'] == 1 for a in anns)
        assert all(
            isinstance(a['segmentation'], dict) for a in anns if a['iscrowd'])
        annotated = {a['image_id'] for a in anns}
        assert len(annotated) < num
        for ann in anns:
            img = coco.loadImgs(ann['image_id'])[0]
            mask = coco.annToMask(ann)
            assert mask.shape == (img['height'], img['width'])
            assert mask.sum() == ann['area'] > 0
            x, y, w, h = ann['bbox']
            ys, xs = np.nonzero(mask)
            assert (x, y, w, h) == (xs.min(), ys.min(), np.ptp(xs) + 1,
                                    np.ptp(ys) + 1)
        for img in coco.loadImgs(coco.getImgIds()):
            path = osp.join(root, f'{split}2017', img['file_name'])
            assert cv2.imread(path).shape == (img['height'], img['width'], 3)


def test_coco_loads_with_mmdet(data):
    from mmcv.transforms import LoadImageFromFile
    from mmdet.datasets import CocoDataset
    from mmdet.datasets.transforms import LoadAnnotations

    for split, num in (('train', 64), ('val', 16)):
        dataset = CocoDataset(
            metainfo=dict(classes=COCO_CLASSES),
            data_root=data['coco']['root'],
            ann_file=f'annotations/instances_{split}2017.json',
            data_prefix=dict(img=f'{split}2017/'),
            pipeline=[
                LoadImageFromFile(),
                LoadAnnotations(with_bbox=True, with_mask=True)
            ],
            filter_cfg=dict(filter_empty_gt=False),
            lazy_init=False)
        assert len(dataset) == num
        ignored = 0
        for i in range(len(dataset)):
            results = dataset[i]
            masks = results['gt_masks']
            assert masks.masks.shape[1:] == results['img'].shape[:2]
            assert len(masks) == len(results['gt_bboxes'])
            assert all(m.any() for m in masks.masks)
            ignored += int(results['gt_ignore_flags'].sum())
        assert ignored > 0  # crowds are ignored regions


def test_ade20k_masks_and_mmseg_loading(data):
    from mmseg.datasets import BaseSegDataset
    from mmseg.datasets.transforms import LoadAnnotations

    root = data['ade20k']['root']
    mask_dir = osp.join(root, 'annotations/training')
    values = set()
    for name in sorted(os.listdir(mask_dir)):
        mask = cv2.imread(osp.join(mask_dir, name), cv2.IMREAD_UNCHANGED)
        assert mask.ndim == 2 and mask.dtype == np.uint8
        assert osp.exists(
            osp.join(root, 'images/training', name[:-4] + '.jpg'))
        values |= set(np.unique(mask).tolist())
        assert (mask == 0).mean() < 0.2  # 0 is small "other" regions only
    assert values == set(range(len(ADE_CLASSES) + 1))

    for folder, num in (('training', 64), ('validation', 16)):
        dataset = BaseSegDataset(
            metainfo=dict(
                classes=ADE_CLASSES,
                palette=[[128, 200, 255], [0, 128, 0], [160, 120, 90],
                         [80, 80, 80]]),
            data_root=root,
            data_prefix=dict(
                img_path=f'images/{folder}',
                seg_map_path=f'annotations/{folder}'),
            img_suffix='.jpg',
            seg_map_suffix='.png',
            reduce_zero_label=True,
            pipeline=[LoadAnnotations()])
        assert len(dataset) == num
        seg = dataset[0]['gt_seg_map']
        assert set(np.unique(seg).tolist()) <= {0, 1, 2, 3, 255}
        assert (seg == 255).any()


def test_ade20k_shapes_labels_are_the_coco_masks(data, tmp_path):
    from mmengine.config import Config
    from mmseg.datasets import BaseSegDataset
    from mmseg.datasets.transforms import LoadAnnotations

    coco_root = data['coco']['root']
    summary = synthetic_data.make_ade20k_shapes(
        str(tmp_path / 'shapes'), coco_root)
    assert summary['classes'] == list(COCO_CLASSES)
    root = summary['root']
    for split, folder in (('train', 'training'), ('val', 'validation')):
        coco = COCO(
            osp.join(coco_root, f'annotations/instances_{split}2017.json'))
        assert summary['splits'][split]['num_images'] == len(coco.getImgIds())
        for img in coco.loadImgs(coco.getImgIds()):
            stem = osp.splitext(img['file_name'])[0]
            label = cv2.imread(
                osp.join(root, f'annotations/{folder}/{stem}.png'),
                cv2.IMREAD_UNCHANGED)
            expected = np.zeros_like(label)
            for ann in coco.loadAnns(coco.getAnnIds(imgIds=img['id'])):
                expected[coco.annToMask(ann).astype(bool)] = ann['category_id']
            np.testing.assert_array_equal(label, expected)
            with open(
                    osp.join(coco_root, f'{split}2017', img['file_name']),
                    'rb') as src, open(
                        osp.join(root, f'images/{folder}/{stem}.jpg'),
                        'rb') as dst:
                assert src.read() == dst.read()
    assert not synthetic_data.make_ade20k_shapes(root, coco_root)['generated']

    # Read as the main job's segmentation config reads it: background is
    # class 0, not ignored.
    cfg = Config.fromfile(
        osp.join(REPO, 'configs', 'sem_fpn',
                 'fpn_efficientmod-xxs_embedded-shapes.py'))
    dataset = BaseSegDataset(
        metainfo=cfg.metainfo,
        data_root=root,
        data_prefix=dict(
            img_path='images/training', seg_map_path='annotations/training'),
        img_suffix='.jpg',
        seg_map_suffix='.png',
        reduce_zero_label=cfg.train_dataloader.dataset.reduce_zero_label,
        pipeline=[LoadAnnotations(reduce_zero_label=False)])
    values = set()
    for i in range(len(dataset)):
        values |= set(np.unique(dataset[i]['gt_seg_map']).tolist())
    assert values == {0, 1, 2, 3}


def test_imagenet_loads_with_mmpretrain(data):
    from mmpretrain.datasets import CustomDataset, ImageNet

    root = data['imagenet']['root']
    with open(osp.join(root, 'classes.txt'), encoding='utf-8') as f:
        assert tuple(f.read().split()) == IMAGENET_CLASSES
    for split, num in (('train', 64), ('val', 16)):
        from_ann = ImageNet(
            data_root=root,
            split=split,
            metainfo=dict(classes=osp.join(root, 'classes.txt')))
        assert from_ann.ann_file.endswith(f'meta/{split}.txt')
        assert len(from_ann) == num
        assert tuple(from_ann.CLASSES) == IMAGENET_CLASSES
        from_folders = CustomDataset(data_root=root, data_prefix=split)
        assert len(from_folders) == num
        assert len(from_folders.CLASSES) == len(IMAGENET_CLASSES)

        def labels(dataset):
            return {
                osp.relpath(info['img_path'], root): info['gt_label']
                for info in dataset.load_data_list()
            }

        assert labels(from_ann) == labels(from_folders)
        counts = np.bincount(list(labels(from_ann).values()))
        assert counts.tolist() == [num // 4] * 4


def test_same_seed_is_byte_identical(tmp_path):
    first = make_all(str(tmp_path / 'a'), seed=3, **SMALL)
    make_all(str(tmp_path / 'b'), seed=3, **SMALL)
    make_all(str(tmp_path / 'c'), seed=4, **SMALL)
    a, b = _tree_bytes(tmp_path / 'a'), _tree_bytes(tmp_path / 'b')
    assert a.keys() == b.keys() and a == b
    c = _tree_bytes(tmp_path / 'c')
    ann = osp.join('coco', 'annotations', 'instances_train2017.json')
    assert a[ann] != c[ann]
    assert first['coco']['splits']['train']['num_images'] == 6


def test_regeneration_is_skipped_unless_parameters_change(tmp_path):
    root = str(tmp_path / 'coco')
    ann = osp.join(root, 'annotations', 'instances_val2017.json')
    assert make_coco(root, **SMALL['coco'])['generated']
    stamp = os.stat(ann).st_mtime_ns
    again = make_coco(root, **SMALL['coco'])
    assert not again['generated']
    assert again['splits']['val']['num_images'] == 4
    assert os.stat(ann).st_mtime_ns == stamp

    changed = make_coco(root, **dict(SMALL['coco'], num_val=5))
    assert changed['generated']
    assert len(COCO(ann).getImgIds()) == 5

    # A directory this generator did not write is never deleted.
    os.remove(osp.join(root, '.embedded.json'))
    with pytest.raises(FileExistsError):
        make_coco(root, **SMALL['coco'])
    assert osp.exists(ann)
    # ...but an empty one (e.g. made by hand beforehand) is used.
    os.mkdir(tmp_path / 'empty')
    assert make_coco(str(tmp_path / 'empty'), **SMALL['coco'])['generated']
    assert sorted(os.listdir(tmp_path)) == ['coco', 'empty']


def test_interrupted_generation_leaves_previous_data(tmp_path, monkeypatch):
    root = str(tmp_path / 'coco')
    make_coco(root, **SMALL['coco'])

    def crash(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(synthetic_data, '_write_json', crash)
    with pytest.raises(KeyboardInterrupt):
        make_coco(root, **dict(SMALL['coco'], seed=1))
    monkeypatch.undo()
    assert sorted(os.listdir(tmp_path)) == ['coco']
    assert not make_coco(root, **SMALL['coco'])['generated']


def test_module_imports_no_openmmlab_library():
    """Generating data loads neither torch nor any OpenMMLab library."""
    code = '\n'.join([
        'import sys',
        f'sys.path.insert(0, {osp.join(REPO, "tools", "dataset_converters")!r})',
        'import synthetic_data',
        'heavy = {"torch", "mmengine", "mmcv", "mmdet", "mmseg", "mmpretrain",',
        '         "mmefficientmod"} & set(sys.modules)',
        'assert not heavy, heavy',
    ])
    subprocess.run([sys.executable, '-c', code], check=True)
