"""What a state dict holds, and what to do when it does not fit a model.

Read off the keys and shapes alone: which network (an EfficientMod of a
known arch, or another library's model such as a torchvision ResNet), which
task its heads serve (classifier, detector, segmentor, or a backbone alone),
and whether it is in the authors' layout or the folded inference form.
"""
import re
from collections import Counter
from typing import Dict, List, NamedTuple, Optional

from ..arch import ARCH_ZOO
from .convert_released import (STEM_WEIGHT, NotEfficientModCheckpoint,
                               arch_signature, infer_arch)

STEM = 'stem.conv.weight'
#: Command that converts the authors' released files.
CONVERTER = 'python tools/model_converters/efficientmod_to_mm.py SRC DST'


class WeightsSummary(NamedTuple):
    """What a state dict holds (see :func:`summarize`)."""
    network: str  # 'efficientmod', 'upstream', 'wrapped_upstream' or 'other'
    arch: Optional[str]  # an ARCH_ZOO name, or widths as text
    task: str  # 'classifier', 'detector', 'segmentor', 'backbone' or ''
    deploy: bool  # EfficientMod blocks in the folded inference form
    text: str  # the whole description, for messages


def _groups(keys) -> Counter:
    return Counter(k.split('.', 1)[0] for k in keys)


def _task(keys) -> str:
    groups = _groups(keys)
    if 'decode_head' in groups:
        return 'segmentor'
    if groups.keys() & {'rpn_head', 'roi_head', 'bbox_head'}:
        return 'detector'
    if 'head' in groups or 'fc' in groups:
        return 'classifier'
    return 'backbone'


#: The kinds of model, as nouns for messages.
TASK_NAMES = {
    'classifier': 'image classifier (backbone and classification head)',
    'detector': 'detector (backbone, neck and detection heads)',
    'segmentor': 'semantic segmentor (backbone, neck and decode head)',
    'backbone': 'backbone alone (no neck or head)',
}


def with_article(noun: str) -> str:
    return ('an ' if noun[:1] in 'aeiou' else 'a ') + noun


#: Keys only an EfficientMod in this project's naming has.
EFFICIENTMOD_KEY = re.compile(
    r'^(.*?)(stem\.(conv|norm)\.|stages\.\d+\.blocks\.\d+\.'
    r'(fc_value|context|attn|ffn)\.)')


def _efficientmod_prefix(state_dict: Dict) -> Optional[str]:
    for key in state_dict:
        if key.endswith(STEM):
            return key[:-len(STEM)]
    for key in state_dict:  # the stem itself is missing
        found = EFFICIENTMOD_KEY.match(key)
        if found:
            return found.group(1)
    return None


def _arch_name(backbone: Dict) -> str:
    if STEM not in backbone:
        return 'of unknown arch (no stem weights)'
    try:
        return infer_arch(backbone)
    except NotEfficientModCheckpoint:
        widths, _ = arch_signature(backbone)
        return f'custom (widths {list(widths)})'


def _other_network(keys: List[str]) -> str:
    groups = _groups(k[len('backbone.'):] if k.startswith('backbone.') else k
                     for k in keys)
    if {'conv1', 'bn1', 'layer1'} <= groups.keys():
        return 'a ResNet-style network (conv1, bn1, layer1...)'
    if 'patch_embed' in groups and 'blocks' in groups:
        return 'a ViT-style network (patch_embed, blocks...)'
    if 'features' in groups:
        return 'a torchvision-style network (features...)'
    shown = ', '.join(keys[:3])
    return f'a network of another architecture (keys such as {shown})'


def summarize(state_dict: Dict) -> WeightsSummary:
    """Describe the weights of ``state_dict`` (a model's or a file's)."""
    keys = [k for k in state_dict if isinstance(k, str)]
    if isinstance(state_dict.get('model'), dict):
        return WeightsSummary(
            'wrapped_upstream', None, 'classifier', False,
            "a checkpoint whose weights are under 'model' (the layout of "
            "the authors' released ImageNet files), not 'state_dict'")
    if any(k.endswith(STEM_WEIGHT) for k in keys):
        return WeightsSummary(
            'upstream', None, _task(keys), False,
            f"EfficientMod weights in the authors' layout "
            f'({with_article(TASK_NAMES[_task(keys)])}), not converted')
    prefix = _efficientmod_prefix(state_dict)
    task = _task(keys)
    if prefix is None:
        other = _other_network(keys)
        where = ', '.join(sorted(_groups(keys)))
        return WeightsSummary(
            'other', None, task, False,
            f'{other}, with no EfficientMod weights; its parts: {where} '
            f'({len(keys)} tensors)')
    backbone = {
        k[len(prefix):]: v
        for k, v in state_dict.items() if k.startswith(prefix)
    }
    arch = _arch_name(backbone)
    label = f'EfficientMod-{arch}' if arch in ARCH_ZOO \
        else f'EfficientMod {arch}'
    has_modulation = any(k.endswith('fc_value.weight') for k in backbone)
    deploy = has_modulation and not any(
        k.endswith('layer_scale') for k in backbone)
    if prefix not in ('', 'backbone.'):
        text = f'{label} weights under {prefix!r}'
    else:
        text = f'an {label} {TASK_NAMES[task]}'
    if deploy:
        text += ' in the folded inference form (switch_to_deploy)'
    return WeightsSummary('efficientmod', arch, task, deploy, text)


def known_archs() -> str:
    return ', '.join(sorted(ARCH_ZOO))
