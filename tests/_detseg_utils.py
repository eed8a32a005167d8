"""Paths and helpers shared by the tests (fixtures are in conftest.py)."""
import glob
import importlib.util
import os
import os.path as osp
import socket
import subprocess
import sys

import torch
import torch.nn.functional as F
from mmengine.model import BaseModel
from mmengine.runner import Runner

from mmefficientmod import EfficientMod
from mmefficientmod.checkpoint.safe_load import load_checkpoint

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
DET_EMBEDDED = osp.join(REPO, 'configs', 'mask_rcnn',
                        'mask-rcnn_efficientmod-xxs_fpn_embedded.py')
SEG_EMBEDDED = osp.join(REPO, 'configs', 'sem_fpn',
                        'fpn_efficientmod-xxs_embedded.py')


def make_tiny_data(root):
    """Small embedded COCO and ADE20K datasets under ``root``."""
    synthetic_data = load_tool('dataset_converters/synthetic_data')
    coco = osp.join(root, 'coco')
    ade = osp.join(root, 'ade20k')
    synthetic_data.make_coco(coco, num_train=8, num_val=4, img_size=(160, 160))
    synthetic_data.make_ade20k(
        ade, num_train=8, num_val=4, img_size=(128, 128))
    return coco, ade


def det_overrides(coco_root):
    """Config text that points the embedded detection config at
    ``coco_root`` and makes it tiny (128 px, 2 images per step)."""
    coco_root = coco_root.rstrip('/') + '/'
    return f'''
data_root = {coco_root!r}
img_scale = (128, 128)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape',
                                          'img_shape', 'scale_factor')),
]
train_dataloader = dict(dataset=dict(data_root=data_root,
                                     pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(data_root=data_root,
                                   pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val2017.json')
test_evaluator = val_evaluator
model = dict(train_cfg=dict(rpn_proposal=dict(nms_pre=200, max_per_img=50),
                            rcnn=dict(sampler=dict(num=32))),
             test_cfg=dict(rpn=dict(nms_pre=200, max_per_img=50)))
randomness = dict(seed=0)
'''


def seg_overrides(ade_root):
    """Config text that points the embedded segmentation config at
    ``ade_root`` and makes it tiny (96 px crops)."""
    return f'''
data_root = {ade_root!r}
crop_size = (96, 96)
model = dict(data_preprocessor=dict(size=crop_size))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='RandomResize', scale=(128, 128), ratio_range=(0.75, 1.25),
         keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(128, 128), keep_ratio=True),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(batch_size=2, dataset=dict(data_root=data_root,
                                                   pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(data_root=data_root,
                                   pipeline=test_pipeline))
test_dataloader = val_dataloader
randomness = dict(seed=0)
'''


def tiny_det_config(directory, coco_root):
    """The embedded detection config made tiny and pointed at
    ``coco_root``; tests inherit it (a config file must not assign the same
    top-level name twice, the second would replace the first)."""
    return write_config(
        osp.join(directory, 'tiny_det.py'), DET_EMBEDDED,
        det_overrides(coco_root))


def tiny_seg_config(directory, ade_root):
    """The embedded segmentation config made tiny, pointed at
    ``ade_root``."""
    return write_config(
        osp.join(directory, 'tiny_seg.py'), SEG_EMBEDDED,
        seg_overrides(ade_root))


def det_sample(h, w):
    """The DetDataSample of an (h, w) image, neither scaled nor padded."""
    from mmdet.structures import DetDataSample
    return DetDataSample(
        metainfo=dict(
            img_shape=(h, w),
            ori_shape=(h, w),
            pad_shape=(h, w),
            scale_factor=(1.0, 1.0),
            batch_input_shape=(h, w)))


def seg_sample(h, w):
    """The SegDataSample of an (h, w) image, neither scaled nor padded."""
    from mmseg.structures import SegDataSample
    return SegDataSample(
        metainfo=dict(
            img_shape=(h, w),
            ori_shape=(h, w),
            pad_shape=(h, w),
            batch_input_shape=(h, w),
            padding_size=[0, 0, 0, 0]))


def write_config(path, base, body=''):
    """Write a config at ``path`` that inherits ``base`` (absolute path or
    ``pkg::`` name) and adds ``body``."""
    with open(path, 'w', encoding='utf-8') as f:
        f.write(f'_base_ = {base!r}\n{body}\n')
    return str(path)


def tool_env(**extra):
    env = dict(os.environ)
    env.setdefault('OMP_NUM_THREADS', '2')
    env['PYTHONWARNINGS'] = 'ignore'
    env['PYTHON'] = sys.executable
    env.update(extra)
    return env


def run(cmd, cwd=REPO, timeout=600, check=True, **env):
    """Run a command; on failure show its output tail in the assertion."""
    proc = subprocess.run(
        cmd,
        cwd=cwd,
        env=tool_env(**env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout)
    if check:
        assert proc.returncode == 0, (
            f'{" ".join(map(str, cmd))} exited {proc.returncode}:\n'
            f'{proc.stdout[-6000:]}')
    return proc


def tool(name, *args, **kwargs):
    """Run ``tools/<name>`` with this interpreter."""
    return run(
        [sys.executable,
         osp.join(REPO, 'tools', name), *map(str, args)], **kwargs)


def load_tool(name):
    """Import ``tools/<name>.py`` as a module (for in-process calls);
    ``name`` may name a sub-folder, e.g. ``'model_converters/publish_ema'``.
    Its own imports of the files beside it (``from authors_model import
    ...``) are found as when it runs as a script: from its folder."""
    module_name = '_tool_' + name.replace('/', '_')
    if module_name in sys.modules:
        return sys.modules[module_name]
    path = osp.join(REPO, 'tools', name + '.py')
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    sys.path.insert(0, osp.dirname(path))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(osp.dirname(path))
    return module


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def files(pattern):
    return sorted(glob.glob(pattern, recursive=True))


def state_dict_of(path):
    ckpt = load_checkpoint(path)
    return ckpt.get('state_dict', ckpt)


# A four-stage arch with both block types, small enough for any test.
TINY_ARCH = dict(
    widths=[8, 16, 24, 32],
    depths=[1, 1, 1, 1],
    attention_depths=[0, 0, 1, 1],
    ratios=[2],
    attention_mlp_ratios=[2] * 4)


class TinyClassifier(BaseModel):
    """A TINY_ARCH backbone and a 2-class linear head."""

    def __init__(self):
        super().__init__()
        self.backbone = EfficientMod(
            TINY_ARCH, out_indices=(3, ), out_type='avg_featmap')
        self.head = torch.nn.Linear(32, 2)

    def forward(self, inputs, labels=None, mode='tensor'):
        logits = self.head(self.backbone(inputs)[0])
        if mode == 'loss':
            return dict(loss=F.cross_entropy(logits, labels))
        return logits


class ToyData(torch.utils.data.Dataset):
    """Eight seeded 32 px images of two classes."""

    def __len__(self):
        return 8

    def __getitem__(self, index):
        generator = torch.Generator().manual_seed(index)
        return dict(
            inputs=torch.randn(3, 32, 32, generator=generator),
            labels=index % 2)


def make_runner(work_dir, max_iters, **kwargs):
    """An iteration-based runner of TinyClassifier on ToyData that saves
    every 2 iterations."""
    return Runner(
        model=TinyClassifier(),
        work_dir=str(work_dir),
        train_dataloader=dict(
            dataset=ToyData(),
            batch_size=2,
            num_workers=0,
            sampler=dict(type='DefaultSampler', shuffle=True),
            collate_fn=dict(type='default_collate')),
        optim_wrapper=dict(optimizer=dict(type='AdamW', lr=1e-3)),
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        default_hooks=dict(
            checkpoint=dict(type='CheckpointHook', interval=2, by_epoch=False),
            logger=dict(type='LoggerHook', interval=1)),
        randomness=dict(seed=0),
        **kwargs)
