"""Deterministic generators of the small embedded datasets (no downloads).

What they write: docs/development.md#embedded-datasets; their command line:
``make_embedded_data.py`` beside this file. Imports only numpy, OpenCV and
pycocotools.
"""
import json
import os
import os.path as osp
import shutil
import tempfile

import cv2
import numpy as np
from pycocotools import mask as mask_utils

COCO_CLASSES = ('circle', 'square', 'triangle')
ADE_CLASSES = ('sky', 'tree', 'building', 'road')
IMAGENET_CLASSES = ('circle', 'square', 'triangle', 'stripes')

# Bump when the generated content changes, so stale datasets are rebuilt.
_FORMAT_VERSION = 1
_MARKER = '.embedded.json'
_DATASET_TAGS = {'coco': 1, 'ade20k': 2, 'imagenet': 3}
_SPLIT_TAGS = {'train': 0, 'val': 1}


def _image_rng(seed, dataset, split, index):
    """One generator per image, so no image depends on those before it."""
    return np.random.default_rng(
        [seed, _DATASET_TAGS[dataset], _SPLIT_TAGS[split], index])


def _write_json(path, obj):
    # A fixed layout: identical content is identical bytes.
    with open(path, 'w', encoding='utf-8') as f:
        json.dump(obj, f, separators=(',', ':'))


def _write_lines(path, lines):
    with open(path, 'w', encoding='utf-8') as f:
        f.writelines(f'{line}\n' for line in lines)


def _write_image(path, img):
    """An RGB image as JPEG (quality 95), or a label map as PNG."""
    img, params = np.clip(np.rint(img), 0, 255).astype(np.uint8), []
    if img.ndim == 3:  # OpenCV writes BGR
        img, params = img[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95]
    if not cv2.imwrite(path, img, params):
        raise OSError(f'failed to write {path}')


def _read_marker(root):
    try:
        with open(osp.join(root, _MARKER), encoding='utf-8') as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _build(root, dataset, params, classes, write_split, extra=None):
    """Write the train and val splits with ``write_split(out_dir, split) ->
    the split's paths and counts`` unless ``root`` already holds the dataset
    made with ``params`` (the marker, the temporary folder and what is never
    replaced: docs/development.md#embedded-datasets)."""
    params = dict(dataset=dataset, version=_FORMAT_VERSION, **params)
    params = json.loads(json.dumps(params))  # tuples -> lists, as on disk
    marker = _read_marker(root)
    if marker is not None and marker.get('params') == params:
        return dict(marker['summary'], root=root, generated=False)
    if marker is None and osp.lexists(root) and (not osp.isdir(root)
                                                 or os.listdir(root)):
        raise FileExistsError(
            f'{root} exists and was not written by this generator; '
            'remove it or choose another root')

    parent = osp.dirname(osp.abspath(root))
    os.makedirs(parent, exist_ok=True)
    tmp_dir = tempfile.mkdtemp(
        prefix=f'.{osp.basename(osp.abspath(root))}.tmp-', dir=parent)
    try:
        splits = {s: write_split(tmp_dir, s) for s in ('train', 'val')}
        summary = dict(classes=list(classes), **(extra or {}), splits=splits)
        _write_json(
            osp.join(tmp_dir, _MARKER), dict(params=params, summary=summary))
        if osp.lexists(root):
            shutil.rmtree(root)
        try:
            os.rename(tmp_dir, root)
        except OSError:  # kept if another process made the same first
            marker = _read_marker(root)
            if marker is None or marker.get('params') != params:
                raise
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return dict(summary, root=root, generated=True)


def _saturated_colour(rng):
    """A vivid RGB colour: objects are vivid, backgrounds muted."""
    hue, sat, val = (rng.integers(0, 180), rng.integers(150, 256),
                     rng.integers(150, 256))
    rgb = cv2.cvtColor(np.uint8([[[hue, sat, val]]]), cv2.COLOR_HSV2RGB)
    return rgb[0, 0].astype(np.float32)


def _noisy_background(rng, h, w):
    """Muted, smoothly varying colour field with pixel noise, so models
    cannot rely on a flat background to find objects."""
    cells = rng.uniform(60, 190, size=(4, 4, 3))
    grey = cells.mean(axis=2, keepdims=True)
    cells = (grey + 0.35 * (cells - grey)).astype(np.float32)
    field = cv2.resize(cells, (w, h), interpolation=cv2.INTER_CUBIC)
    return field + rng.normal(0, 10, size=(h, w, 3)).astype(np.float32)


def _shape_mask(shape, cx, cy, size, angle, h, w):
    """Binary mask of a filled circle/square/triangle of extent ``size``
    (diameter or side) rotated by ``angle`` degrees."""
    mask = np.zeros((h, w), np.uint8)
    if shape == 'circle':
        cv2.circle(mask, (round(cx), round(cy)), round(size / 2), 1, -1)
        return mask
    if shape == 'square':
        radius, start, corners = size / np.sqrt(2), 45.0, 4
    else:
        radius, start, corners = size / np.sqrt(3), -90.0, 3
    theta = np.deg2rad(start + angle + 360.0 / corners * np.arange(corners))
    pts = np.stack([cx + radius * np.cos(theta), cy + radius * np.sin(theta)],
                   axis=1)
    cv2.fillPoly(mask, [np.rint(pts).astype(np.int32)], 1)
    return mask


def _random_shape_mask(rng, shape, size, h, w):
    """A shape placed uniformly at random, fully inside the image."""
    margin = 0.6 * size + 1
    cx = rng.uniform(margin, w - margin)
    cy = rng.uniform(margin, h - margin)
    return _shape_mask(shape, cx, cy, size, rng.uniform(0, 360), h, w)


def _coco_object(rng, h, w):
    """One shape (its class) of random colour, 20-100 px on 256 px images,
    smaller on small images. Returns (label, [(mask, colour)])."""
    label = int(rng.integers(len(COCO_CLASSES)))
    largest = min(100, 0.5 * min(h, w))
    size = rng.uniform(min(20, 0.5 * largest), largest)
    mask = _random_shape_mask(rng, COCO_CLASSES[label], size, h, w)
    return label, [(mask, _saturated_colour(rng))]


def _coco_crowd(rng, h, w):
    """A cluster of small same-class shapes, annotated as one crowd region
    (like COCO's ``iscrowd=1`` groups). Returns (label, parts)."""
    label = int(rng.integers(len(COCO_CLASSES)))
    span = rng.uniform(0.2, 0.3) * min(h, w)
    x0, y0 = rng.uniform(0, w - span), rng.uniform(0, h - span)
    parts = []
    for _ in range(rng.integers(3, 7)):
        size = rng.uniform(0.2, 0.3) * span
        cx = x0 + rng.uniform(0.6 * size, span - 0.6 * size)
        cy = y0 + rng.uniform(0.6 * size, span - 0.6 * size)
        mask = _shape_mask(COCO_CLASSES[label], cx, cy, size,
                           rng.uniform(0, 360), h, w)
        parts.append((mask, _saturated_colour(rng)))
    return label, parts


def _coco_instances(rng, h, w, index):
    """The instances of one image, painted in list order: dicts with
    ``label``, ``crowd``, ``parts`` and ``visible`` (the mask minus what
    later instances cover). A placement that would hide more than 30% of an
    instance is redrawn (up to 20 times, then the instance is dropped), so
    objects overlap only slightly."""
    if index % 16 == 3:  # one image in 16 is empty
        return []
    drawers = [(_coco_object, False)] * int(rng.integers(1, 5))
    if index % 8 == 5:  # one in 8 has a crowd
        drawers.insert(0, (_coco_crowd, True))
    instances = []
    for drawer, crowd in drawers:
        for _ in range(20):
            label, parts = drawer(rng, h, w)
            mask = np.bitwise_or.reduce([m for m, _ in parts])
            if all(
                (inst['visible'] & (1 - mask)).sum() >= 0.7 * inst['full_area']
                    for inst in instances):
                for inst in instances:
                    inst['visible'] &= 1 - mask
                instances.append(
                    dict(
                        label=label,
                        crowd=crowd,
                        parts=parts,
                        full_area=int(mask.sum()),
                        visible=mask.copy()))
                break
    return instances


def _segmentation(mask, crowd, ann_id):
    """Encode a mask as COCO does, so loaders meet all three encodings:
    crowds as uncompressed RLE (column-major run lengths starting with 0s),
    every fifth instance as compressed RLE, the rest as
    polygons of the outer contours."""
    if crowd:
        flat = mask.flatten(order='F')
        bounds = np.concatenate([[0],
                                 np.flatnonzero(np.diff(flat)) + 1,
                                 [flat.size]])
        counts = ([0] if flat[0] else []) + np.diff(bounds).tolist()
        return dict(counts=counts, size=list(mask.shape))
    if ann_id % 5 == 0:
        rle = mask_utils.encode(np.asfortranarray(mask))
        return dict(
            counts=rle['counts'].decode('ascii'), size=list(rle['size']))
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL,
                                   cv2.CHAIN_APPROX_SIMPLE)
    return [
        c.reshape(-1).astype(float).tolist() for c in contours if len(c) >= 3
    ]


def _segmentation_rle(segm, h, w):
    """Rasterise a COCO segmentation exactly as pycocotools/mmdet do."""
    if isinstance(segm, list):
        return mask_utils.merge(mask_utils.frPyObjects(segm, h, w))
    if isinstance(segm['counts'], list):
        return mask_utils.frPyObjects(segm, h, w)
    return segm


def _coco_split(out_dir, split, num, first_img_id, img_size, seed):
    """Write ``<split>2017/*.jpg`` and its instances JSON, whose ``area``
    and ``bbox`` come from the stored segmentation; returns the counts."""
    w, h = img_size
    img_dir, ann_file = f'{split}2017', f'annotations/instances_{split}2017.json'
    os.makedirs(osp.join(out_dir, img_dir))
    os.makedirs(osp.join(out_dir, 'annotations'), exist_ok=True)
    images, annotations = [], []
    for index in range(num):
        img_id = first_img_id + index
        file_name = f'{img_id:012d}.jpg'
        rng = _image_rng(seed, 'coco', split, index)
        img = _noisy_background(rng, h, w)
        instances = _coco_instances(rng, h, w, index)
        for inst in instances:
            for mask, colour in inst['parts']:
                shade = rng.normal(0, 6, size=(h, w, 3)).astype(np.float32)
                img = np.where(mask[..., None].astype(bool), colour + shade,
                               img)
        _write_image(osp.join(out_dir, img_dir, file_name), img)
        images.append(dict(id=img_id, file_name=file_name, width=w, height=h))
        for inst in instances:
            ann_id = len(annotations) + 1
            segm = _segmentation(inst['visible'], inst['crowd'], ann_id)
            rle = _segmentation_rle(segm, h, w)
            annotations.append(
                dict(
                    id=ann_id,
                    image_id=img_id,
                    category_id=inst['label'] + 1,
                    segmentation=segm,
                    area=float(mask_utils.area(rle)),
                    bbox=[float(v) for v in mask_utils.toBbox(rle)],
                    iscrowd=int(inst['crowd'])))
    categories = [
        dict(id=i + 1, name=name, supercategory='shape')
        for i, name in enumerate(COCO_CLASSES)
    ]
    info = dict(
        description='mmefficientmod embedded synthetic COCO',
        version=str(_FORMAT_VERSION))
    _write_json(
        osp.join(out_dir, ann_file),
        dict(
            info=info,
            licenses=[],
            images=images,
            annotations=annotations,
            categories=categories))
    annotated = {a['image_id'] for a in annotations}
    return dict(
        img_dir=img_dir + '/',
        ann_file=ann_file,
        num_images=num,
        num_annotations=len(annotations),
        num_crowd=sum(a['iscrowd'] for a in annotations),
        num_empty_images=num - len(annotated))


def make_coco(root, num_train=64, num_val=16, img_size=(256, 256), seed=0):
    """Write a COCO-2017-layout instance dataset of ``img_size`` (width,
    height) images to ``root``. Returns ``root``, ``classes``, ``generated``
    (False if it was there already) and per-split paths and counts."""
    params = dict(
        num_train=num_train, num_val=num_val, img_size=img_size, seed=seed)
    first = dict(train=(num_train, 1), val=(num_val, num_train + 1))
    return _build(
        root, 'coco', params, COCO_CLASSES, lambda out, split: _coco_split(
            out, split, *first[split], img_size, seed))


_SKY, _TREE, _BUILDING, _ROAD = range(1, len(ADE_CLASSES) + 1)
_ADE_FOLDERS = dict(train='training', val='validation')


def _ade_label_map(rng, h, w):
    """A street-like layout: sky, buildings standing on a road, tree crowns,
    and a few small "other" blobs labelled 0 (ignored after
    ``reduce_zero_label``)."""
    ys, xs = np.mgrid[0:h, 0:w]
    label = np.full((h, w), _SKY, np.uint8)
    for _ in range(rng.integers(1, 4)):
        x0, width = rng.uniform(-0.1, 0.8) * w, rng.uniform(0.2, 0.5) * w
        top = rng.uniform(0.15, 0.5) * h
        label[(xs >= x0) & (xs < x0 + width) & (ys >= top)] = _BUILDING
    for _ in range(rng.integers(1, 4)):
        centre = (round(rng.uniform(0, w)), round(rng.uniform(0.35, 0.65) * h))
        axes = (round(rng.uniform(0.08, 0.2) * w),
                round(rng.uniform(0.08, 0.2) * h))
        cv2.ellipse(label, centre, axes, rng.uniform(0, 180), 0, 360, _TREE,
                    -1)
    left, right = rng.uniform(0.62, 0.85, size=2) * h
    label[ys >= left + (right - left) * xs / (w - 1)] = _ROAD
    for _ in range(rng.integers(1, 4)):
        centre = (round(rng.uniform(0, w)), round(rng.uniform(0, h)))
        cv2.circle(label, centre, round(rng.uniform(0.03, 0.06) * min(h, w)),
                   0, -1)
    return label


def _ade_textures(rng, h, w):
    """One full-size RGB texture per label value; each class has a distinct
    colour *and* texture (gradient, blobs, window grid, fine noise)."""
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    jitter = rng.uniform(-15, 15, size=(5, 3)).astype(np.float32)

    def noise(std, blur):
        n = rng.normal(0, std, size=(h, w, 3)).astype(np.float32)
        return cv2.GaussianBlur(n, (0, 0), blur) if blur else n

    t = ys[..., None] / h
    sky = (1 - t) * np.float32([90, 150, 230]) + t * np.float32(
        [180, 210, 245]) + noise(3, 0)
    tree = np.float32([40, 125, 45]) + noise(60, 1.5)
    period = rng.integers(10, 16)
    windows = ((xs % period) < period / 2) & ((ys % period) < period / 2)
    building = np.where(windows[..., None], np.float32([60, 65, 90]),
                        np.float32([160, 120, 95])) + noise(6, 0)
    road = np.float32([75, 75, 80]) + noise(12, 0)
    other = _saturated_colour(rng) + noise(20, 0)
    textures = [other, sky, tree, building, road]
    return [tex + jitter[i] for i, tex in enumerate(textures)]


def _seg_split(out_dir, split, samples):
    """Write ``images/<folder>/<name>.jpg`` and ``annotations/<folder>/
    <name>.png`` for each ``(name, image, label map)`` of ``samples``; an
    image given as a path is copied."""
    img_dir, ann_dir = (f'{d}/{_ADE_FOLDERS[split]}'
                        for d in ('images', 'annotations'))
    for d in (img_dir, ann_dir):
        os.makedirs(osp.join(out_dir, d))
    num = 0
    for num, (name, img, label) in enumerate(samples, 1):
        path = osp.join(out_dir, img_dir, name + '.jpg')
        if isinstance(img, str):
            shutil.copyfile(img, path)
        else:
            _write_image(path, img)
        _write_image(osp.join(out_dir, ann_dir, name + '.png'), label)
    return dict(img_dir=img_dir, ann_dir=ann_dir, num_images=num)


def _ade_samples(split, num, img_size, seed):
    """The street scenes of one split."""
    w, h = img_size
    for index in range(num):
        rng = _image_rng(seed, 'ade20k', split, index)
        label = _ade_label_map(rng, h, w)
        img = np.choose(label[..., None], _ade_textures(rng, h, w))
        yield f'ADE_{split}_{index + 1:08d}', img, label


def make_ade20k(root, num_train=64, num_val=16, img_size=(256, 256), seed=0):
    """Write the ADE20K-layout street scenes to ``root``: 0 is "other", ``k``
    is ``ADE_CLASSES[k - 1]`` (read with ``reduce_zero_label=True``).
    Arguments and result as :func:`make_coco`'s."""
    params = dict(
        num_train=num_train, num_val=num_val, img_size=img_size, seed=seed)
    nums = dict(train=num_train, val=num_val)
    return _build(
        root, 'ade20k', params, ADE_CLASSES, lambda out, split: _seg_split(
            out, split, _ade_samples(split, nums[split], img_size, seed)))


def _shapes_samples(coco_root, split):
    """The images of one COCO split (their paths) with their shapes."""
    with open(
            osp.join(coco_root, 'annotations', f'instances_{split}2017.json'),
            encoding='utf-8') as f:
        coco = json.load(f)
    by_image = {}
    for ann in coco['annotations']:
        by_image.setdefault(ann['image_id'], []).append(ann)
    for image in coco['images']:
        h, w = image['height'], image['width']
        label = np.zeros((h, w), np.uint8)
        # The stored segmentations are the visible parts: they do not overlap.
        for ann in by_image.get(image['id'], []):
            rle = _segmentation_rle(ann['segmentation'], h, w)
            label[mask_utils.decode(rle).astype(bool)] = ann['category_id']
        yield (osp.splitext(image['file_name'])[0],
               osp.join(coco_root, f'{split}2017', image['file_name']), label)


def make_ade20k_shapes(root, coco_root):
    """Write the images of the embedded COCO dataset at ``coco_root`` as an
    ADE20K-layout dataset of their shapes: 0 is the background, ``k`` is
    ``COCO_CLASSES[k - 1]``. Returns a dict like :func:`make_coco`'s."""
    source = _read_marker(coco_root)
    if source is None:
        raise FileNotFoundError(
            f'{coco_root} holds no embedded COCO dataset; write it first '
            'with make_coco()')
    return _build(
        root, 'ade20k_shapes', dict(coco=source['params']), COCO_CLASSES,
        lambda out, split: _seg_split(out, split,
                                      _shapes_samples(coco_root, split)))


def _wnid(label):
    """WordNet-style folder name; sorted order equals label order, which is
    how folder-mode loaders assign labels."""
    return f'n{label + 1:08d}'


def _imagenet_image(rng, label, size):
    """One shape on a noisy background, or two-colour stripes of random
    period and orientation."""
    name = IMAGENET_CLASSES[label]
    if name == 'stripes':
        ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
        theta = rng.uniform(0, np.pi)
        phase = (xs * np.cos(theta) + ys * np.sin(theta)) / rng.uniform(6, 12)
        on = (np.floor(phase) % 2).astype(bool)[..., None]
        img = np.where(on, _saturated_colour(rng), _saturated_colour(rng))
    else:
        img = _noisy_background(rng, size, size)
        mask = _random_shape_mask(rng, name,
                                  rng.uniform(0.35, 0.75) * size, size,
                                  size).astype(bool)
        img[mask] = _saturated_colour(rng)
    return img + rng.normal(0, 6, size=img.shape)


def _imagenet_split(out_dir, split, per_class, size, seed):
    """Write ``<split>/<wnid>/*.JPEG`` and ``meta/<split>.txt`` (and, with
    the train split, ``classes.txt``)."""
    if split == 'train':
        os.makedirs(osp.join(out_dir, 'meta'))
        _write_lines(osp.join(out_dir, 'classes.txt'), IMAGENET_CLASSES)
    lines = []
    for label in range(len(IMAGENET_CLASSES)):
        os.makedirs(osp.join(out_dir, split, _wnid(label)))
        for i in range(per_class):
            rel = f'{_wnid(label)}/{_wnid(label)}_{i:05d}.JPEG'
            rng = _image_rng(seed, 'imagenet', split, label * per_class + i)
            _write_image(
                osp.join(out_dir, split, rel),
                _imagenet_image(rng, label, size))
            lines.append(f'{rel} {label}')
    ann_file = f'meta/{split}.txt'
    _write_lines(osp.join(out_dir, ann_file), lines)
    return dict(img_dir=split, ann_file=ann_file, num_images=len(lines))


def make_imagenet(root,
                  num_per_class_train=16,
                  num_per_class_val=4,
                  img_size=64,
                  seed=0):
    """Write an ImageNet-layout dataset of ``img_size`` square images to
    ``root``: class folders ``n00000001``... in label order, mmpretrain's
    ``meta/<split>.txt`` and ``classes.txt``. Returns a dict like
    :func:`make_coco`'s, plus ``wnids`` and ``class_file``."""
    params = dict(
        num_per_class_train=num_per_class_train,
        num_per_class_val=num_per_class_val,
        img_size=img_size,
        seed=seed)
    per_class = dict(train=num_per_class_train, val=num_per_class_val)
    wnids = [_wnid(i) for i in range(len(IMAGENET_CLASSES))]

    def write_split(out, split):
        return _imagenet_split(out, split, per_class[split], img_size, seed)

    return _build(root, 'imagenet', params, IMAGENET_CLASSES, write_split,
                  dict(wnids=wnids, class_file='classes.txt'))
