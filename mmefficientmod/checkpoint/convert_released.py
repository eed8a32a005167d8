"""Reading the released EfficientMod checkpoints.

The authors released three kinds of checkpoint:

* ImageNet classifiers: ``{'model': sd, 'state_dict_ema': sd?}`` with keys
  ``patch_embed.*``, ``layers.i.blocks.j.*``, ``layers.i.downsample.*``,
  ``norm.*`` and ``head.*``;
* COCO Mask R-CNN and ADE20K Semantic FPN models (mmdet 2.x / mmseg 0.x):
  ``{'state_dict': sd}`` with the same backbone keys under ``backbone.``,
  beside neck and head keys whose names OpenMMLab 2.0 kept.

This module maps them explicitly onto this project's module names, so that
they load into ``ImageClassifier`` / ``MaskRCNN`` / ``EncoderDecoder`` models
built from our configs.
"""
import re
from collections import OrderedDict
from typing import Dict, Optional, Tuple

import torch

from ..arch import ARCH_ZOO
from .keys import strip_prefix

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
FIXED_KEYS = {
    'patch_embed.proj.': 'stem.conv.',
    'patch_embed.norm.': 'stem.norm.'
}
STEM_WEIGHT = 'patch_embed.proj.weight'


class NotEfficientModCheckpoint(ValueError):
    """The checkpoint is neither a released nor a converted EfficientMod one."""


def _rename_prefix(key: str, table: Dict[str, str]) -> Optional[str]:
    for old, new in table.items():
        if key.startswith(old):
            return new + key[len(old):]
    return None


def convert_backbone_keys(
        state_dict: Dict[str,
                         torch.Tensor]) -> 'OrderedDict[str, torch.Tensor]':
    """Rename upstream backbone keys (no prefix) to this project's names.

    ``norm.*`` (the classification norm) is kept as ``norm.*``; ``head.*``
    is not a backbone key and must be removed by the caller.
    """
    attention_blocks = {
        BLOCK_KEY.match(k).groups()[:2]
        for k in state_dict if k.endswith('attn.qkv.weight')
    }
    converted = OrderedDict()
    for key, value in state_dict.items():
        block = BLOCK_KEY.match(key)
        downsample = DOWNSAMPLE_KEY.match(key)
        if block:
            stage, index, rest = block.groups()
            table = ATTENTION_KEYS if (
                stage, index) in attention_blocks else MODULATION_KEYS
            new = _rename_prefix(rest, table)
            new = new and f'stages.{stage}.blocks.{index}.{new}'
        elif downsample:
            stage, part, rest = downsample.groups()
            part = 'conv' if part == 'proj' else 'norm'
            new = f'stages.{int(stage) + 1}.downsample.{part}.{rest}'
        elif key.startswith('norm.'):
            new = key
        else:
            new = _rename_prefix(key, FIXED_KEYS)
        if new is None:
            raise NotEfficientModCheckpoint(
                f'Unrecognised EfficientMod backbone key {key!r}: this does not '
                'look like a released EfficientMod checkpoint.')
        converted[new] = value
    return converted


def infer_arch(backbone_state: Dict[str, torch.Tensor]) -> str:
    """Name the arch whose shapes match a backbone state dict in our naming."""
    found = arch_signature(backbone_state)
    for name, settings in ARCH_ZOO.items():
        if arch_signature_of_settings(settings) == found:
            return name
    widths, blocks = found
    raise NotEfficientModCheckpoint(
        f'The checkpoint holds an EfficientMod-like backbone with widths '
        f'{list(widths)} and blocks {[list(b) for b in blocks]} (per stage; '
        f"'m<r>' modulation with ratio r, 'a<r>' attention with MLP ratio r), "
        f'which matches none of the archs {sorted(ARCH_ZOO)}. '
        'Build the model with an arch dict of these settings instead.')


def arch_signature(sd: Dict[str, torch.Tensor]) -> Tuple:
    """(widths, per-stage block kinds) read off the shapes of a state dict."""
    if 'stem.conv.weight' not in sd:
        raise NotEfficientModCheckpoint(
            'No EfficientMod stem in the checkpoint.')
    widths = [sd['stem.conv.weight'].shape[0]]
    widths += [
        sd[f'stages.{i}.downsample.conv.weight'].shape[0] for i in range(1, 4)
        if f'stages.{i}.downsample.conv.weight' in sd
    ]
    blocks = []
    for stage, width in enumerate(widths):
        kinds, j = [], 0
        while True:
            prefix = f'stages.{stage}.blocks.{j}.'
            if prefix + 'fc_value.weight' in sd:
                kinds.append(
                    f'm{sd[prefix + "fc_value.weight"].shape[0] // width}')
            elif prefix + 'ffn.fc1.weight' in sd:
                kinds.append(
                    f'a{sd[prefix + "ffn.fc1.weight"].shape[0] // width}')
            else:
                break
            j += 1
        blocks.append(tuple(kinds))
    return tuple(widths), tuple(blocks)


def arch_signature_of_settings(settings: Dict) -> Tuple:
    blocks = []
    for i in range(4):
        ratios = settings['ratios']
        blocks.append(
            tuple([
                f'm{ratios[j % len(ratios)]}'
                for j in range(settings['depths'][i])
            ] + [f'a{settings["attention_mlp_ratios"][i]}'] *
                  settings['attention_depths'][i]))
    return tuple(settings['widths']), tuple(blocks)


def _describe(checkpoint) -> str:
    if not isinstance(checkpoint, dict):
        return f'a {type(checkpoint).__name__}'
    keys = list(checkpoint)[:8]
    inner = checkpoint.get('state_dict', checkpoint.get('model'))
    if isinstance(inner, dict):
        return f'top-level keys {keys}, first weight keys {list(inner)[:5]}'
    return f'top-level keys {keys}'


def convert_checkpoint(checkpoint: Dict, use_ema: bool = False) -> Dict:
    """Turn a released checkpoint into an mmefficientmod model checkpoint.

    Args:
        checkpoint (dict): What ``torch.load`` returned for the released file.
        use_ema (bool): For ImageNet checkpoints, take ``state_dict_ema``
            rather than ``model``.

    Returns:
        dict: ``{'state_dict': ..., 'meta': {'arch', 'task', 'ema'}}``, with the
        backbone under ``backbone.`` and, for ImageNet, the classifier under
        ``head.fc.`` (mmpretrain's ``LinearClsHead``).
    """
    if isinstance(checkpoint, dict) and 'model' in checkpoint:
        if use_ema and 'state_dict_ema' not in checkpoint:
            raise NotEfficientModCheckpoint(
                'use_ema was asked for, but the checkpoint has no '
                f"'state_dict_ema' ({_describe(checkpoint)}).")
        source = strip_prefix(
            checkpoint['state_dict_ema' if use_ema else 'model'])
        if STEM_WEIGHT not in source:
            raise NotEfficientModCheckpoint(
                f'Not an EfficientMod checkpoint: {_describe(checkpoint)}.')
        head = {k: v for k, v in source.items() if k.startswith('head.')}
        backbone = convert_backbone_keys({
            k: v
            for k, v in source.items() if not k.startswith('head.')
        })
        state_dict = OrderedDict(
            ('backbone.' + k, v) for k, v in backbone.items())
        state_dict.update(
            ('head.fc.' + k[len('head.'):], v) for k, v in head.items())
        task = 'classification'
    elif (isinstance(checkpoint, dict)
          and isinstance(checkpoint.get('state_dict'), dict)
          and 'backbone.' + STEM_WEIGHT in checkpoint['state_dict']):
        if use_ema:
            raise NotEfficientModCheckpoint(
                'use_ema applies to the ImageNet checkpoints only; the released '
                'COCO and ADE20K checkpoints hold a single set of weights.')
        source = checkpoint['state_dict']
        backbone = convert_backbone_keys({
            k[len('backbone.'):]: v
            for k, v in source.items() if k.startswith('backbone.')
        })
        state_dict = OrderedDict(
            ('backbone.' + k, v) for k, v in backbone.items())
        state_dict.update(
            (k, v) for k, v in source.items() if not k.startswith('backbone.'))
        task = 'segmentation' if any(
            k.startswith('decode_head.') for k in source) else 'detection'
    elif (isinstance(checkpoint, dict)
          and isinstance(checkpoint.get('state_dict'), dict)
          and 'backbone.stem.conv.weight' in checkpoint['state_dict']):
        raise NotEfficientModCheckpoint(
            'This is already an mmefficientmod checkpoint; use it as it is.')
    else:
        raise NotEfficientModCheckpoint(
            'Not a released EfficientMod checkpoint: expected an ImageNet one '
            "({'model': ...}) or a COCO/ADE20K one ({'state_dict': ...} with "
            f"'backbone.{STEM_WEIGHT}'), found {_describe(checkpoint)}.")
    state_dict = OrderedDict((k, v.float() if v.is_floating_point() else v)
                             for k, v in state_dict.items())
    arch = infer_arch({
        k[len('backbone.'):]: v
        for k, v in state_dict.items() if k.startswith('backbone.')
    })
    return dict(
        state_dict=state_dict,
        meta=dict(
            arch=arch,
            task=task,
            ema=use_ema,
            converted_from='upstream EfficientMod'))


def is_upstream_checkpoint(checkpoint) -> bool:
    """Whether ``checkpoint`` is in a released (upstream) layout."""
    if not isinstance(checkpoint, dict):
        return False
    model = checkpoint.get('model')
    state_dict = checkpoint.get('state_dict')
    return ((isinstance(model, dict) and STEM_WEIGHT in strip_prefix(model))
            or (isinstance(state_dict, dict)
                and 'backbone.' + STEM_WEIGHT in state_dict))
