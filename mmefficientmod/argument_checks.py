"""Range checks of the backbone's and the CPU predictor's arguments.

Each bad value is reported by an error that names the argument, what it
may be and the value given; unchecked, some bad values fail far away (a
size mismatch in a conv) and others run silently wrong (``drop_path_rate=1``
turns the training forward into NaN, 1.5 or -0.1 scale the residual
branches at random). Both callers pass their ``locals()``, so that a check
here stays in step with their signatures.

Also the one check of the backbone's input batch
(:func:`backbone_input`). A leaf module: it imports nothing of the package.
"""
import math
import numbers
import os.path as osp
from typing import Any, Dict, Iterable, Mapping, Sequence

import torch
import torch.nn as nn

NUM_STAGES = 4
ARCH_INT_LISTS = {
    # key: (lower bound, what it means)
    'widths': (1, 'channels of each stage'),
    'depths': (0, 'modulation blocks of each stage'),
    'attention_depths': (0, 'attention blocks of each stage'),
    'attention_mlp_ratios': (1, "attention blocks' feed-forward ratio of "
                             'each stage'),
}
OUT_TYPES = ('featmap', 'avg_featmap')


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _fail(owner: str, name: str, expected: str, value: Any) -> None:
    raise ValueError(f'{owner}: {name} must be {expected}; got {value!r}.')


def _check_int(owner, name, value, low, high=None, what=''):
    if _is_int(value) and value >= low and (high is None or value <= high):
        return
    if high is None:
        _fail(owner, name, f'an integer >= {low}{what}', value)
    _fail(owner, name, f'in [{low}, {high}] (an integer{what})', value)


def check_arch_dict(arch: Mapping, owner: str = 'EfficientMod') -> None:
    """Keys, lengths and ranges of a custom arch dict."""
    allowed = tuple(ARCH_INT_LISTS) + ('ratios', )
    unknown = sorted(set(arch) - set(allowed))
    if unknown:
        raise ValueError(f'{owner}: the arch dict has unknown keys {unknown};'
                         f' its keys are {allowed}.')
    missing = [k for k in allowed if k not in arch]
    if missing:
        raise ValueError(f'{owner}: the arch dict lacks {missing}; a custom '
                         f'arch needs all of {allowed}.')
    for key, (low, meaning) in ARCH_INT_LISTS.items():
        values = arch[key]
        if (not isinstance(values, Sequence) or isinstance(values, str)
                or len(values) != NUM_STAGES
                or not all(_is_int(v) and v >= low for v in values)):
            _fail(
                owner, f'arch[{key!r}]',
                f'{NUM_STAGES} integers >= {low}, one per stage '
                f'({meaning})', values)
    ratios = arch['ratios']
    if (not isinstance(ratios, Sequence) or isinstance(ratios, str)
            or not ratios or not all(_is_int(v) and v >= 1 for v in ratios)):
        _fail(
            owner, "arch['ratios']", 'one or more integers >= 1 (expansion '
            'ratios of the modulation blocks, cycled in every stage)', ratios)
    if sum(arch['depths']) + sum(arch['attention_depths']) == 0:
        _fail(owner, 'arch', 'an arch with at least one block', dict(arch))


def _check_out_indices(owner: str, value: Any) -> None:
    indices = [value] if _is_int(value) else value
    span = f'[-{NUM_STAGES}, {NUM_STAGES - 1}]'
    if (isinstance(indices, (str, bytes)) or not isinstance(indices, Iterable)
            or not list(indices) or not all(
                _is_int(i) and -NUM_STAGES <= i < NUM_STAGES
                for i in indices)):
        _fail(
            owner, 'out_indices',
            f'in {span} (0-based stage numbers, negative ones counting '
            'from the end): an integer or a non-empty sequence of them', value)


def _check_init_cfg(owner: str, value: Any) -> None:
    if value is None or isinstance(value, Mapping):
        configs = [] if value is None else [value]
    elif isinstance(value, (list, tuple)):
        configs = list(value)
    else:
        configs = [value]
    for config in configs:
        if not isinstance(config, Mapping) or 'type' not in config:
            _fail(
                owner, 'init_cfg', "None, a dict with a 'type' (e.g. "
                "dict(type='Pretrained', checkpoint=...)) or a list of them",
                value)


def check_backbone_arguments(arguments: Dict[str, Any]) -> None:
    """Check the arguments of :class:`~mmefficientmod.models.EfficientMod`
    (its ``locals()``); arguments not listed here are not checked."""
    owner = 'EfficientMod'
    get = arguments.get
    arch = get('arch', 'xxs')
    if isinstance(arch, Mapping):
        check_arch_dict(arch, owner)
    elif not isinstance(arch, str):
        _fail(owner, 'arch', "one of 'xxs', 'xs', 's', 's_conv' or a dict",
              arch)
    _check_int(
        owner,
        'in_channels',
        get('in_channels', 3),
        1,
        what=' (channels of the input images)')
    _check_out_indices(owner, get('out_indices', (0, 1, 2, 3)))
    if get('out_type', 'featmap') not in OUT_TYPES:
        _fail(owner, 'out_type', f'one of {OUT_TYPES}', get('out_type'))
    _check_int(
        owner,
        'frozen_stages',
        get('frozen_stages', -1),
        -1,
        NUM_STAGES,
        what=': -1 freezes nothing, 0 the stem, k the stem and k stages')
    rate = get('drop_path_rate', 0.)
    if not _is_real(rate) or not 0 <= rate < 1:
        _fail(
            owner, 'drop_path_rate', 'a number in [0, 1) (the stochastic '
            'depth rate of the last block; 1 would drop every residual '
            'branch)', rate)
    scale = get('layer_scale_init_value', 1e-4)
    if not _is_real(scale) or not math.isfinite(scale) or scale <= 0:
        _fail(
            owner, 'layer_scale_init_value', 'a finite number > 0 (the '
            'initial scale of the modulation blocks, 1e-4 in the paper)',
            scale)
    kernel = get('kernel_size', 7)
    if not _is_int(kernel) or kernel < 1 or kernel % 2 == 0:
        _fail(
            owner, 'kernel_size', 'an odd integer >= 1 (the depthwise '
            'kernel of the context branch; even kernels shift the map)',
            kernel)
    for flag in ('with_cp', 'deploy'):
        if not isinstance(get(flag, False), bool):
            _fail(owner, flag, 'True or False', get(flag))
    _check_init_cfg(owner, get('init_cfg'))
    pretrained = get('pretrained')
    if pretrained is not None and not isinstance(pretrained, str):
        _fail(owner, 'pretrained', 'None or a checkpoint path or URL',
              pretrained)


def check_predictor_arguments(arguments: Dict[str, Any],
                              engines: Mapping[str, Sequence[str]]) -> None:
    """Check the arguments of
    :func:`~mmefficientmod.deploy.cpu_predictor` (its ``locals()``).

    Args:
        arguments (dict): The predictor's arguments by name.
        engines (Mapping): The engines of each precision.
    """
    owner = 'cpu_predictor'
    get = arguments.get
    model = get('model')
    if not isinstance(model, nn.Module):
        _fail(
            owner, 'model', 'a built model (an ImageClassifier with an '
            'EfficientMod backbone, or an EfficientMod)',
            type(model).__name__)
    precision = get('precision', 'fp32')
    if not isinstance(precision, str) or precision not in engines:
        _fail(owner, 'precision', f'one of {tuple(engines)}', precision)
    engine = get('engine', 'auto')
    every_engine = sorted({e for names in engines.values() for e in names})
    if not isinstance(engine, str) or engine != 'auto' and \
            engine not in every_engine:
        _fail(owner, 'engine', f"'auto' or one of {every_engine}", engine)
    threads = get('threads')
    if threads is not None:
        _check_int(owner, 'threads', threads, 1, what=' or None')
    _check_int(owner, 'num_calibration_batches',
               get('num_calibration_batches', 8), 1)
    shape = get('example_shape', (1, 3, 224, 224))
    if (not isinstance(shape, Sequence) or len(shape) != 4
            or not all(_is_int(s) and s >= 1 for s in shape)):
        _fail(owner, 'example_shape',
              '4 positive integers (N, C, H, W), e.g. (1, 3, 224, 224)', shape)
    data = get('calibration_data')
    if data is not None and not isinstance(data, Iterable):
        _fail(owner, 'calibration_data',
              'None or an iterable of batches (tensors or a dataloader)',
              type(data).__name__)
    workdir = get('workdir')
    if workdir is not None and (not isinstance(workdir, str)
                                or osp.exists(workdir)
                                and not osp.isdir(workdir)):
        _fail(owner, 'workdir', 'None or a directory path', workdir)


def backbone_input(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """The batch ``x`` as the backbone (whose first weight is ``weight``)
    computes it: an empty batch or an integer image is refused with the
    fix; floating input of another precision is cast to the weights' (a
    float16 image into a float32 model), unless autocast is on, which casts
    per operation itself."""
    if torch.jit.is_tracing() or torch.compiler.is_compiling():
        return x
    if x.shape[0] == 0:
        raise ValueError(
            f'EfficientMod got an empty batch (shape {tuple(x.shape)}): pass '
            'at least one image (check the dataloader or the list of '
            'inputs).')
    if not x.is_floating_point():
        raise TypeError(
            f'EfficientMod takes floating-point images, got {x.dtype}: '
            'normalise them first (the data preprocessor does), e.g. '
            '(x.float() - mean) / std.')
    if x.dtype != weight.dtype and not torch.is_autocast_enabled(
            x.device.type):
        x = x.to(weight.dtype)
    return x
