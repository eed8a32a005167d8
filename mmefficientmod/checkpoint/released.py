"""The authors' released checkpoints in this project's layout: ImageNet
classifiers (``{'model': sd, 'state_dict_ema': sd}``, keys ``patch_embed.*``,
``layers.i.blocks.j.*``, ``layers.i.downsample.*``, ``norm.*``, ``head.*``)
and mmdet 2.x / mmseg 0.x models (``{'state_dict': sd}``, the same backbone
keys under ``backbone.``, beside neck and head keys OpenMMLab 2.0 kept)."""
import re
from collections import OrderedDict
from typing import Dict, Optional, Tuple

import torch

from ..arch import ARCH_ZOO, NUM_STAGES

# Block-local upstream names -> ours, for each of the two block types.
MODULATION_KEYS = {
    'gamma_1': 'layer_scale',
    'norm.': 'norm.',
    'mlp.fc1.': 'fc_value.',
    'mlp.context_layer.f.': 'context.fc_in.',
    'mlp.context_layer.context_list.0.': 'context.dwconv.',
    'mlp.context_layer.g.': 'context.fc_out.',
    'mlp.fc2.': 'fc_out.',
}
ATTENTION_KEYS = {
    'norm1.': 'norm1.',
    'attn.qkv.': 'attn.qkv.',
    'attn.proj.': 'attn.proj.',
    'norm2.': 'norm2.',
    'mlp.fc1.': 'ffn.fc1.',
    'mlp.fc2.': 'ffn.fc2.',
}
BLOCK_KEY = re.compile(r'layers\.(\d+)\.blocks\.(\d+)\.(.+)')
DOWNSAMPLE_KEY = re.compile(r'layers\.(\d+)\.downsample\.(proj|norm)\.(.+)')
STEM_KEYS = {
    'patch_embed.proj.': 'stem.conv.',
    'patch_embed.norm.': 'stem.norm.'
}
#: The stem weight in the authors' layout and in ours.
UPSTREAM_STEM = 'patch_embed.proj.weight'
STEM = 'stem.conv.weight'


class NotEfficientModCheckpoint(ValueError):
    """No EfficientMod weights this project can use."""


def strip_prefix(state_dict: Dict,
                 prefix: str = 'module.',
                 drop_others: bool = False) -> Dict:
    """``state_dict`` without ``prefix`` (a DDP or EMA wrapper's) on its
    keys; keys without it are kept, or left out with ``drop_others``."""
    return OrderedDict((k[len(prefix):] if k.startswith(prefix) else k, v)
                       for k, v in state_dict.items()
                       if k.startswith(prefix) or not drop_others)


def _rename(key: str, table: Dict[str, str]) -> Optional[str]:
    return next((new + key[len(old):]
                 for old, new in table.items() if key.startswith(old)), None)


def convert_backbone_keys(
        state_dict: Dict) -> 'OrderedDict[str, torch.Tensor]':
    """Upstream backbone keys (no prefix) in this project's names; the
    classification ``norm.*`` keeps its name."""
    attention = {
        BLOCK_KEY.match(k).groups()[:2]
        for k in state_dict if k.endswith('attn.qkv.weight')
    }
    converted = OrderedDict()
    for key, value in state_dict.items():
        block, downsample = BLOCK_KEY.match(key), DOWNSAMPLE_KEY.match(key)
        if block:
            stage, index, rest = block.groups()
            new = _rename(
                rest, ATTENTION_KEYS if
                (stage, index) in attention else MODULATION_KEYS)
            new = new and f'stages.{stage}.blocks.{index}.{new}'
        elif downsample:
            stage, part, rest = downsample.groups()
            part = 'conv' if part == 'proj' else 'norm'
            new = f'stages.{int(stage) + 1}.downsample.{part}.{rest}'
        else:
            new = key if key.startswith('norm.') else _rename(key, STEM_KEYS)
        if new is None:
            raise NotEfficientModCheckpoint(
                f'Unrecognised EfficientMod backbone key {key!r}: this is not '
                'a released EfficientMod checkpoint.')
        converted[new] = value
    return converted


def _signature(backbone: Dict) -> Tuple:
    """Per stage: its width and its blocks' kinds, ``'m<r>'`` (modulation,
    expansion r) or ``'a<r>'`` (attention, MLP ratio r), from the shapes."""
    stages, width = [], backbone[STEM].shape[0]
    for stage in range(NUM_STAGES):
        down = backbone.get(f'stages.{stage}.downsample.conv.weight')
        width = width if down is None else down.shape[0]
        blocks = {}
        for key, value in backbone.items():
            match = re.fullmatch(
                fr'stages\.{stage}\.blocks\.(\d+)\.(fc_value|ffn\.fc1)'
                r'\.weight', key)
            if match:
                kind = 'm' if match.group(2) == 'fc_value' else 'a'
                blocks[int(match.group(1))] = \
                    f'{kind}{value.shape[0] // width}'
        stages.append((width, tuple(blocks[i] for i in sorted(blocks))))
    return tuple(stages)


def _signature_of_arch(arch: Dict) -> Tuple:
    ratios = arch['ratios']
    return tuple((arch['widths'][i],
                  tuple(f'm{ratios[j % len(ratios)]}'
                        for j in range(arch['depths'][i])) +
                  (f'a{arch["attention_mlp_ratios"][i]}', ) *
                  arch['attention_depths'][i]) for i in range(NUM_STAGES))


def infer_arch(backbone: Dict) -> str:
    """The ``ARCH_ZOO`` name of a backbone state dict (our naming), or
    ``'custom (widths [...])'``."""
    if STEM not in backbone:
        raise NotEfficientModCheckpoint('No EfficientMod stem in the weights.')
    found = _signature(backbone)
    for name, arch in ARCH_ZOO.items():
        if _signature_of_arch(arch) == found:
            return name
    return f'custom (widths {[width for width, _ in found]})'


def released_weights(checkpoint) -> Dict:
    """The weights of the authors' layouts: an ImageNet file's ``model`` and
    ``state_dict_ema``, or a COCO/ADE20K file's ``state_dict``; else {}."""
    if not isinstance(checkpoint, dict):
        return {}
    found = {
        name: checkpoint[name]
        for name in ('model', 'state_dict_ema')
        if isinstance(checkpoint.get(name), dict) and any(
            k.endswith(UPSTREAM_STEM) for k in checkpoint[name])
    }
    state = checkpoint.get('state_dict')
    if not found and isinstance(state,
                                dict) and 'backbone.' + UPSTREAM_STEM in state:
        found['state_dict'] = state
    return found


def convert_released(checkpoint, use_ema: bool = False) -> Dict:
    """A released checkpoint as ``{'state_dict', 'meta': {'arch', 'task',
    'ema'}}`` in float32, the backbone under ``backbone.`` and an ImageNet
    head under ``head.fc.``; ``use_ema``: an ImageNet file's EMA weights."""
    found = released_weights(checkpoint)
    if not found:
        shown = list(checkpoint)[:8] if isinstance(checkpoint, dict) else \
            f'a {type(checkpoint).__name__}'
        raise NotEfficientModCheckpoint(
            "Not a released EfficientMod checkpoint: expected an ImageNet one "
            "({'model': ...}) or a COCO/ADE20K one ({'state_dict': ...} with "
            f"'backbone.{UPSTREAM_STEM}'), found {shown}.")
    return convert_found(found, use_ema)


def convert_found(found: Dict, use_ema: bool = False) -> Dict:
    """:func:`convert_released` of what :func:`released_weights` found."""
    if 'state_dict' in found:
        if use_ema:
            raise NotEfficientModCheckpoint(
                'use_ema (--ema) applies to the ImageNet files only; the '
                'released COCO and ADE20K files hold one set of weights.')
        source, prefix, head = found['state_dict'], 'backbone.', None
        task = 'segmentation' if any(
            k.startswith('decode_head.') for k in source) else 'detection'
    else:
        wanted = 'state_dict_ema' if use_ema else 'model'
        if wanted not in found:
            raise NotEfficientModCheckpoint(
                "use_ema (--ema) was asked for, but the file has no "
                "'state_dict_ema': convert it without --ema." if use_ema else
                "The file holds only EMA weights ('state_dict_ema', no "
                "'model'): convert it with --ema (use_ema=True).")
        source, prefix, head = strip_prefix(found[wanted]), '', 'head.'
        task = 'classification'
    backbone, rest = {}, OrderedDict()
    for key, value in source.items():
        if head and key.startswith(head):  # mmpretrain's LinearClsHead
            rest['head.fc.' + key[len(head):]] = value
        elif key.startswith(prefix):
            backbone[key[len(prefix):]] = value
        else:
            rest[key] = value
    backbone = convert_backbone_keys(backbone)
    state_dict = OrderedDict(('backbone.' + k, v) for k, v in backbone.items())
    state_dict.update(rest)
    for key, value in state_dict.items():
        if value.is_floating_point():
            state_dict[key] = value.float()
        elif not key.endswith('num_batches_tracked'):
            raise NotEfficientModCheckpoint(
                f'{key} holds {value.dtype} values where a weight is '
                'floating point: the file is not a released EfficientMod '
                'checkpoint, or was damaged.')
    meta = dict(
        arch=infer_arch(backbone),
        task=task,
        ema=use_ema,
        converted_from='upstream EfficientMod')
    return dict(state_dict=state_dict, meta=meta)
