"""Check the datasets a config uses before a run (docs/bad_inputs.md#datasets).

COCO annotation files are read as JSON, so that a broken entry is named
rather than failing the library's loader with a bare ``KeyError``; the other
datasets are read by their library. Exit status 1 with the problems per file
and entry, else 0 with one line.
"""
import argparse
import json
import os.path as osp
import sys
from collections import defaultdict

import numpy as np
from mmengine.config import Config, DictAction
from PIL import Image, ImageFile

IGNORE_INDEX = 255
COCO_IMAGE_KEYS = ('id', 'file_name', 'height', 'width')
COCO_ANN_KEYS = ('image_id', 'bbox', 'category_id')
# A box may reach this far past the image border (rounding).
BORDER_TOLERANCE = 1.0


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='List missing fields, bad boxes, out-of-range labels and '
        'unreadable images of the datasets a config uses.')
    add = parser.add_argument
    add('config', help='config file')
    add('--splits',
        nargs='+',
        default=['train', 'val', 'test'],
        choices=['train', 'val', 'test'],
        help='the dataloaders to check (default: all the config has)')
    add('--max-listed',
        type=int,
        default=100,
        help='problems listed per file (all are counted); default 100')
    add('--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config entries, e.g. '
        'train_dataloader.dataset.data_root=data/coco/')
    return parser.parse_args(argv)


class Problems(defaultdict):
    """Problems per file, in the order found."""

    def __init__(self):
        super().__init__(list)

    def add(self, path, entry, what):
        self[path].append(f'{entry}: {what}')


def _join(*parts):
    parts = [p for p in parts if p]
    return osp.join(*parts) if parts else ''


def image_size(path, problems, entry):
    """``(height, width)`` of a decodable image, else None (a problem)."""
    if not osp.isfile(path):
        problems.add(path, entry, 'file not found')
        return None
    try:
        with Image.open(path) as image:
            image.load()
            return image.height, image.width
    except Exception as error:  # PIL raises many types for bad files
        problems.add(path, entry, f'does not open as an image ({error})')
        return None


def check_coco(ds, problems):
    ann_file = _join(ds.get('data_root'), ds['ann_file'])
    try:
        with open(ann_file, encoding='utf-8') as f:
            coco = json.load(f)
    except OSError as error:
        problems.add(ann_file, 'the file', f'cannot be read ({error})')
        return
    except ValueError as error:
        problems.add(ann_file, 'the file', f'does not read as JSON ({error})')
        return
    classes = (ds.get('metainfo') or {}).get('classes')
    if classes is None:  # the dataset class's own
        from mmengine.registry import DATASETS
        classes = getattr(DATASETS.get(ds['type']), 'METAINFO', {})
        classes = classes.get('classes', ())
    classes = tuple(classes)
    names = {c.get('id'): c.get('name') for c in coco.get('categories', [])}
    img_prefix = _join(
        ds.get('data_root'), (ds.get('data_prefix') or {}).get('img', ''))
    images = {}
    for i, img in enumerate(coco.get('images', [])):
        entry = f'images[{i}] (id {img.get("id")})'
        missing = [k for k in COCO_IMAGE_KEYS if k not in img]
        if missing:
            problems.add(ann_file, entry, f'missing {", ".join(missing)}')
        if 'id' in img:
            images[img['id']] = img
        if 'file_name' in img:
            size = image_size(
                osp.join(img_prefix, img['file_name']), problems, entry)
            listed = (img.get('height'), img.get('width'))
            if size and None not in listed and size != listed:
                problems.add(
                    ann_file, entry, f'{img["file_name"]} is '
                    f'{size[0]}x{size[1]}, the file says '
                    f'{listed[0]}x{listed[1]} (height x width)')
    for i, ann in enumerate(coco.get('annotations', [])):
        entry = (f'annotations[{i}] (id {ann.get("id")}, image '
                 f'{ann.get("image_id")})')
        missing = [k for k in COCO_ANN_KEYS if k not in ann]
        if missing:
            problems.add(ann_file, entry, f'missing {", ".join(missing)}')
        category = ann.get('category_id')
        name = names.get(category)
        if 'category_id' in ann and name not in classes:
            problems.add(
                ann_file, entry, f'category id {category} ' +
                (f'({name!r}) is not one of the config\'s classes {classes}'
                 if name else 'is not in the file\'s categories'))
        if 'image_id' in ann and ann['image_id'] not in images:
            problems.add(ann_file, entry, 'no image has this image_id')
        if 'bbox' in ann:
            box_problem = _box_problem(ann['bbox'],
                                       images.get(ann.get('image_id')))
            if box_problem:
                problems.add(ann_file, entry, box_problem)


def _box_problem(box, img):
    """What is wrong with COCO ``box`` of image ``img`` (a dict), or None."""
    if not (isinstance(box, (list, tuple)) and len(box) == 4
            and all(isinstance(v, (int, float)) for v in box)):
        return f'bbox {box!r} is not [x, y, w, h]'
    x, y, w, h = box
    if w <= 0 or h <= 0:
        return f'bbox {box} has zero area'
    if not img or 'height' not in img or 'width' not in img:
        return None
    H, W, tol = img['height'], img['width'], BORDER_TOLERANCE
    if x >= W or y >= H or x + w <= 0 or y + h <= 0:
        return (f'bbox {box} lies entirely outside its {H}x{W} image '
                '(height x width)')
    if x < -tol or y < -tol or x + w > W + tol or y + h > H + tol:
        return (f'bbox {box} reaches outside its {H}x{W} image '
                '(height x width)')
    return None


def check_built(ds, problems):
    """Check the images, maps and labels of a dataset the library builds
    (MMSegmentation, MMPretrain)."""
    from mmengine.registry import DATASETS
    cfg = dict(ds, pipeline=[], serialize_data=False, lazy_init=False)
    cfg.pop('filter_cfg', None)
    dataset = DATASETS.build(cfg)
    num_classes = len(dataset.metainfo.get('classes') or ())
    for i, info in enumerate(dataset.data_list):
        entry = f'sample {i} ({osp.basename(info["img_path"])})'
        label = info.get('gt_label')
        if label is not None and num_classes and not all(
                0 <= int(v) < num_classes for v in np.atleast_1d(label)):
            problems.add(
                dataset.ann_file or dataset.data_prefix.get('img_path', ''),
                entry, f'label {label} is outside 0..{num_classes - 1} '
                f'({num_classes} classes)')
        img_size = image_size(info['img_path'], problems, entry)
        path = info.get('seg_map_path')
        if path is None or not image_size(path, problems, entry):
            continue
        # as training reads it: after reduce_zero_label and label_map
        from mmseg.datasets.transforms import LoadAnnotations
        labels = LoadAnnotations()(dict(info, seg_fields=[]))['gt_seg_map']
        if img_size and labels.shape[:2] != img_size:
            problems.add(
                path, entry, f'map is {labels.shape[0]}x{labels.shape[1]}, '
                f'its image {img_size[0]}x{img_size[1]}')
        ids = np.unique(labels)
        bad = ids[(ids >= num_classes) & (ids != IGNORE_INDEX)].tolist()
        if bad:
            problems.add(
                path, entry, f'label ids {bad} (after reduce_zero_label='
                f'{bool(info.get("reduce_zero_label"))}) are not below '
                f'num_classes={num_classes} nor the ignore index '
                f'{IGNORE_INDEX}')


def leaf_datasets(node):
    """The dataset configs inside ``node`` (a dataloader's ``dataset``),
    wrappers unwrapped."""
    if isinstance(node, (list, tuple)):
        for item in node:
            yield from leaf_datasets(item)
    elif isinstance(node, dict):
        inner = node.get('datasets', node.get('dataset'))
        yield from ([node] if inner is None else leaf_datasets(inner))


def check_dataset(ds, library, problems):
    if library == 'mmdet' and str(ds.get('ann_file', '')).endswith('.json'):
        check_coco(ds, problems)
    elif library in ('mmseg', 'mmpretrain'):
        check_built(ds, problems)
    else:
        raise SystemExit(
            f'check_dataset.py reads COCO (mmdet), MMSegmentation '
            f'and MMPretrain datasets; {ds.get("type")} of '
            f'{library} is not one of them.')


def main(argv=None):
    args = parse_args(argv)
    ImageFile.LOAD_TRUNCATED_IMAGES = False  # a cut-short image is a problem
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    from mmengine.registry import init_default_scope

    import mmefficientmod.apply_stack_fixes  # noqa: F401
    library = cfg.get('default_scope')
    init_default_scope(library)
    problems, seen, checked = Problems(), [], []
    for split in args.splits:
        loader = cfg.get(f'{split}_dataloader')
        if not isinstance(loader, dict):
            continue
        checked.append(split)
        for ds in leaf_datasets(loader.get('dataset')):
            if ds in seen:
                continue
            seen.append(ds)
            try:
                check_dataset(ds, library, problems)
            except (OSError, ValueError, KeyError) as error:
                where = _join(ds.get('data_root'), ds.get('ann_file'))
                problems.add(where or f'{split} dataset', 'the dataset',
                             f'cannot be read ({error})')
    if not problems:
        print(f'check_dataset: OK: {len(seen)} dataset(s) of '
              f'{", ".join(checked)} checked, no problem found.')
        return 0
    for path, found in problems.items():
        print(f'{path}: {len(found)} problem(s)')
        for line in found[:args.max_listed]:
            print(f'  {line}')
        if len(found) > args.max_listed:
            print(f'  ... and {len(found) - args.max_listed} more')
    print(f'check_dataset: {sum(map(len, problems.values()))} problem(s) in '
          f'{len(problems)} file(s); fix them (or the config) before '
          'training or testing.')
    return 1


if __name__ == '__main__':
    sys.exit(main())
