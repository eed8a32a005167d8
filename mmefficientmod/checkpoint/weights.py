"""The one path from a checkpoint file to weights (read safely, a release
converted once), and :func:`check_fit`: weights that do not fit a model are
refused, naming what the file holds and the fix."""
from collections import namedtuple
from typing import Dict, Optional

import torch

from .released import (STEM, UPSTREAM_STEM, NotEfficientModCheckpoint,
                       convert_found, infer_arch, released_weights,
                       strip_prefix)
from .safe_load import open_checkpoint


class CheckpointMismatchError(RuntimeError):
    """Weights that leave part of a model unloaded or have other shapes."""


def read_checkpoint(filename: str, use_ema: bool = False) -> Dict:
    """``{'state_dict', 'meta'}`` of a checkpoint file in this project's
    layout, a released one converted (``use_ema``: its EMA weights)."""
    checkpoint = open_checkpoint(filename)
    released = released_weights(checkpoint)
    if released:
        return convert_found(released, use_ema)
    if use_ema:
        raise NotEfficientModCheckpoint(
            f"use_ema applies to the authors' released ImageNet files; "
            f'{filename} is not one (the EMA weights of a training '
            'checkpoint: tools/model_converters/publish_ema.py).')
    state = checkpoint.get('state_dict', checkpoint) if isinstance(
        checkpoint, dict) else None
    if not isinstance(state, dict) or not any(
            isinstance(v, torch.Tensor) for v in state.values()):
        found = list(checkpoint)[:5] if isinstance(checkpoint, dict) \
            else type(checkpoint).__name__
        raise NotEfficientModCheckpoint(
            f'{filename} holds no weights (found {found}): expected a '
            'checkpoint with a state_dict, or a state dict.')
    return dict(state_dict=state, meta=checkpoint.get('meta', {}))


def backbone_weights(filename: str,
                     prefix: Optional[str] = None,
                     use_ema: bool = False) -> Dict:
    """The EfficientMod backbone's weights of any checkpoint, unprefixed
    (``prefix``: by default ``'backbone.'`` when the file has such keys)."""
    state = read_checkpoint(filename, use_ema)['state_dict']
    if prefix is None:
        prefix = 'backbone.' if any(k.startswith('backbone.')
                                    for k in state) else ''
    selected = strip_prefix(state, prefix, drop_others=True)
    if STEM not in selected:
        raise NotEfficientModCheckpoint(
            f'{filename} holds no EfficientMod backbone under the prefix '
            f'{prefix!r}: it holds {summarize(state).text}.')
    return selected


# kind: 'efficientmod', 'released' or 'other'; text: for messages.
Summary = namedtuple('Summary', 'kind arch task deploy text')


def summarize(state_dict: Dict) -> Summary:
    """What a state dict (a model's or a file's) holds."""
    keys = [k for k in state_dict if isinstance(k, str)]
    groups = {k.split('.', 1)[0] for k in keys}
    task = ('semantic segmentor' if 'decode_head' in groups else
            'detector' if groups & {'rpn_head', 'roi_head', 'bbox_head'} else
            'image classifier' if 'head' in groups else 'backbone alone')
    if 'model' in keys or any(k.endswith(UPSTREAM_STEM) for k in keys):
        text = ("EfficientMod weights in the authors' released layout, not "
                'converted')
        return Summary('released', '', task, False, text)
    prefixes = [k[:-len(STEM)] for k in keys if k.endswith(STEM)]
    if not prefixes:
        parts = sorted({k.split('.')[k.startswith('backbone.')] for k in keys})
        network = 'a ResNet-style network' if {
            'conv1', 'layer1'
        } <= set(parts) else 'another network'
        text = f'{network} with no EfficientMod weights (parts: {parts[:8]})'
        return Summary('other', '', task, False, text)
    backbone = strip_prefix(state_dict, prefixes[0], drop_others=True)
    arch = infer_arch(backbone)
    deploy = not any(k.endswith('layer_scale') for k in backbone) and any(
        k.endswith('fc_value.weight') for k in backbone)
    name = f'EfficientMod {arch}' if ' ' in arch else f'EfficientMod-{arch}'
    form = ' in the folded inference form' if deploy else ''
    return Summary('efficientmod', arch, task, deploy,
                   f'an {name} {task}{form}')


def _fix(model: Summary, weights: Summary) -> str:
    if weights.kind == 'released':
        return ('Convert it first: python '
                'tools/model_converters/efficientmod_to_mm.py SRC DST.')
    if weights.kind == 'other':
        return 'Use the config these weights were trained with.'
    if weights.arch != model.arch:
        return (f'Use the EfficientMod-{weights.arch} config of this model '
                f"(model.backbone.arch='{weights.arch}' with the matching "
                'neck/head in_channels), or a checkpoint of this arch.')
    if weights.deploy != model.deploy:
        return (f'Build the model with model.backbone.deploy='
                f'{weights.deploy} to load them.')
    if weights.task != model.task and weights.task in ('image classifier',
                                                       'backbone alone'):
        return ('These are pretraining weights: give them to the backbone, '
                "model.backbone.init_cfg=dict(type='Pretrained', "
                'checkpoint=FILE), and train; to evaluate, use a checkpoint '
                'of the whole model.')
    return ('Use the config the file was trained with (another num_classes '
            'or head gives other shapes).')


def check_fit(expected: Dict,
              given: Dict,
              source: str = 'the weights',
              allow_missing: bool = False,
              allow_unexpected: bool = True) -> None:
    """Raise :class:`CheckpointMismatchError` when ``given`` leaves tensors
    of ``expected`` (a model's state dict) missing (unless
    ``allow_missing``), gives them other shapes or (unless
    ``allow_unexpected``) has tensors the model has no place for.
    BatchNorm's ``num_batches_tracked`` counters are not weights."""
    keys = [k for k in expected if not k.endswith('num_batches_tracked')]
    missing = [] if allow_missing else [k for k in keys if k not in given]
    other = [
        k for k in keys if k in given and hasattr(given[k], 'shape')
        and given[k].shape != expected[k].shape
    ]
    extra = [] if allow_unexpected else [k for k in given if k not in expected]
    found = []
    if missing:
        found.append(f'{len(missing)} of the model\'s {len(keys)} tensors '
                     f'are missing from them (e.g. {missing[0]})')
    if other:
        found.append(f'{len(other)} have other shapes (e.g. {other[0]}: '
                     f'{list(given[other[0]].shape)} in the file, '
                     f'{list(expected[other[0]].shape)} in the model)')
    if extra:
        found.append(f'{len(extra)} of theirs have no place in the model '
                     f'(e.g. {extra[0]})')
    if found:
        model, weights = summarize(expected), summarize(given)
        raise CheckpointMismatchError(
            f'Refused to load {source}: they are {weights.text}, the model '
            f'is {model.text}; {", and ".join(found)}. {_fix(model, weights)}')
