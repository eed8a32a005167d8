"""Refuse weights that do not fit a model with an EfficientMod backbone.

mmengine loads checkpoints with ``strict=False``: a checkpoint that leaves
weights of the model at their random initial values, or whose tensors have
other shapes, is loaded anyway and only logged ("do not match exactly"), so
that evaluating it gives numbers (every mAP 0.0, or a random model's
boxes) instead of an error. The libraries' ``tools/test.py``, their
inferencers and ``get_model`` all end in ``Module._load_from_state_dict`` of
the model, whose *load_state_dict pre-hooks* torch runs (mmengine's
``load_state_dict`` too). So every module that holds an EfficientMod (the
backbone itself, the detector, segmentor or classifier around it, and a
deep copy such as the EMA model) gets :func:`_check_before_loading` as such
a hook: the outermost one (the module being loaded, prefix ``''``) compares
the incoming state dict with the module's own, and refuses it before
anything is copied, saying what the file holds (see :mod:`.describe`), how
many tensors are missing, and the fix.

Torch's global module registration hook is what finds those modules: it is
called whenever a module is assigned to another, so a module whose child is
(or holds) an EfficientMod is hooked and marked in turn.

Deliberate partial loads: set the environment variable
``MMEFFICIENTMOD_ALLOW_PARTIAL_LOAD=1`` (``tools/test.py
--allow-partial-checkpoint`` sets it), or load inside
``with allow_partial_load():``; then a one-line warning is logged instead.
Training with ``load_from`` keeps mmengine's behaviour (see
:class:`~mmefficientmod.engine.EfficientModConfigCheckHook`).
"""
import contextlib
import os
import threading
from collections import OrderedDict
from typing import Dict, List, NamedTuple, Optional, Tuple

import torch
import torch.nn as nn
from mmengine.logging import MMLogger

from ..arch import ARCH_ZOO
from .describe import CONVERTER, WeightsSummary, summarize, with_article

PARTIAL_LOAD_ENV = 'MMEFFICIENTMOD_ALLOW_PARTIAL_LOAD'
OPT_OUT = (f'To load only the part that fits on purpose, set '
           f'{PARTIAL_LOAD_ENV}=1 in the environment (tools/test.py: '
           f'--allow-partial-checkpoint).')
#: Attribute set on every module that holds an EfficientMod.
MARK = '_mmefficientmod_checks_loading'
#: Where a state dict's root metadata names the file it was read from.
SOURCE_KEY = 'mmefficientmod_source'

_state = threading.local()


class CheckpointMismatchError(RuntimeError):
    """The weights leave part of the model unloaded or have other shapes."""


class LoadFit(NamedTuple):
    """How a state dict fits a model's own."""
    missing: List[str]
    mismatched: List[Tuple[str, tuple, tuple]]  # key, file's, model's shape
    unexpected: List[str]
    total: int

    @property
    def complete(self) -> bool:
        return not self.missing and not self.mismatched


def compare(expected: Dict, given: Dict) -> LoadFit:
    """Compare ``given`` (what is loaded) with ``expected`` (the model's
    state dict); BatchNorm's ``num_batches_tracked`` counters are not
    weights and are left out, as mmengine does."""
    missing, mismatched = [], []
    for key, value in expected.items():
        if key.endswith('num_batches_tracked'):
            continue
        if key not in given:
            missing.append(key)
            continue
        other = given[key]
        if isinstance(other, torch.Tensor) and other.shape != value.shape:
            mismatched.append((key, tuple(other.shape), tuple(value.shape)))
    unexpected = [k for k in given if k not in expected]
    total = sum(1 for k in expected if not k.endswith('num_batches_tracked'))
    return LoadFit(missing, mismatched, unexpected, total)


def _archs_differ(model: WeightsSummary, weights: WeightsSummary) -> bool:
    return (weights.network == 'efficientmod'
            and model.network == 'efficientmod' and weights.arch != model.arch)


def advice(model: WeightsSummary, weights: WeightsSummary,
           fit: LoadFit) -> str:
    """What to do, from what the file and the model are."""
    if weights.network == 'wrapped_upstream':
        return (f"Convert it first: {CONVERTER} (add --ema for its EMA "
                'weights), then load DST; a backbone init_cfg '
                "(type='Pretrained') also reads it directly.")
    if weights.network == 'upstream':
        return (f'Convert it first: {CONVERTER}, then load DST; a backbone '
                "init_cfg (type='Pretrained') also reads it directly.")
    if weights.network == 'other':
        return ('These are not weights of this EfficientMod model: use the '
                'config the file was trained with, or a checkpoint trained '
                'with this config.')
    if _archs_differ(model, weights):
        if weights.arch not in ARCH_ZOO:
            return (f'The file\'s backbone (EfficientMod {weights.arch}) is '
                    f'not the model\'s: use the config the file was trained '
                    'with, or a checkpoint of this model.')
        return (f'The file is EfficientMod-{weights.arch}, the model '
                f'EfficientMod-{model.arch}: use the EfficientMod-'
                f'{weights.arch} config of the same model (or '
                f'model.backbone.arch={weights.arch!r} with the matching '
                'neck/head in_channels), or the checkpoint of this arch.')
    if weights.deploy != model.deploy:
        form = 'folded inference' if weights.deploy else 'training'
        return (f'The file is in the {form} form: build the model with '
                f'model.backbone.deploy={weights.deploy} to load it.')
    if weights.task != model.task and weights.task in ('classifier',
                                                       'backbone'):
        return ('These are pretraining weights for the backbone. To train '
                'from them, give them to the backbone: '
                "model.backbone.init_cfg=dict(type='Pretrained', "
                'checkpoint=FILE) (from the command line: --cfg-options '
                'model.backbone.init_cfg.checkpoint=FILE when the config '
                'has a Pretrained init_cfg). To evaluate, use a checkpoint '
                'of the whole model, trained with this config.')
    if weights.task != model.task:
        return (f'The file is {with_article(weights.task)}, the model '
                f'{with_article(model.task)}: use the config the file was '
                'trained with.')
    if fit.mismatched:
        return ('The layers of other shapes were trained with other '
                'settings (e.g. another num_classes or head): use the '
                'config the file was trained with.')
    return 'Use the config the file was trained with.'


def report(expected: Dict,
           state_dict: Dict,
           fit: LoadFit,
           source: Optional[str] = None) -> Tuple[str, str]:
    """``(what, fix)``: what the weights are and how many tensors do not
    fit (``fit``, from :func:`compare`), and what to do."""
    model = summarize(expected)
    weights = summarize(state_dict)
    subject = f'the checkpoint {source} holds' if source \
        else 'the weights are'
    parts = [
        f'{len(fit.missing)} of the model\'s {fit.total} tensors are '
        'missing from it' +
        (f' (e.g. {fit.missing[0]})' if fit.missing else '')
    ]
    if fit.mismatched:
        key, theirs, ours = fit.mismatched[0]
        parts.append(f'{len(fit.mismatched)} have other shapes (e.g. {key}: '
                     f'{list(theirs)} in the file, {list(ours)} in the '
                     'model)')
    if fit.unexpected:
        parts.append(f'{len(fit.unexpected)} of its tensors have no place in '
                     f'the model (e.g. {fit.unexpected[0]})')
    what = (f'{subject} {weights.text}; the model is {model.text}; '
            f'{", and ".join(parts)}')
    return what, advice(model, weights, fit)


def tag_source(checkpoint, source: str):
    """Record where ``checkpoint`` was read from in its state dict's
    ``_metadata`` (the per-module metadata that torch's and mmengine's
    loaders hand to load_state_dict hooks), so that a refusal names the
    file. Returns the checkpoint, whose state dict may now be an
    OrderedDict."""
    if not isinstance(checkpoint, dict):
        return checkpoint
    nested = isinstance(checkpoint.get('state_dict'), dict)
    state = checkpoint['state_dict'] if nested else checkpoint
    if not isinstance(state, OrderedDict):
        state = OrderedDict(state)
        if nested:
            checkpoint['state_dict'] = state
        else:
            checkpoint = state
    metadata = getattr(state, '_metadata', None)
    if metadata is None:
        metadata = state._metadata = OrderedDict()
    metadata.setdefault('', {})[SOURCE_KEY] = source
    return checkpoint


def _partial_load_allowed() -> bool:
    if getattr(_state, 'allow_partial', 0):
        return True
    value = os.environ.get(PARTIAL_LOAD_ENV, '').strip().lower()
    return value in ('1', 'true', 'yes')


@contextlib.contextmanager
def allow_partial_load():
    """Within this block, weights that do not fit are loaded (what fits)
    with a one-line warning instead of refused."""
    _state.allow_partial = getattr(_state, 'allow_partial', 0) + 1
    try:
        yield
    finally:
        _state.allow_partial -= 1


def set_training_load(active: bool) -> None:
    """Between a training run's checkpoint read and its start, loads keep
    mmengine's behaviour: the run's hook has already warned once."""
    _state.training_load = active


def _check_before_loading(module, state_dict, prefix, local_metadata, strict,
                          missing_keys, unexpected_keys, error_msgs) -> None:
    """Load-state-dict pre-hook: refuse weights that do not fit."""
    if prefix or getattr(_state, 'training_load', False):
        return  # an enclosing module's hook checks (or training)
    expected = module.state_dict()
    fit = compare(expected, state_dict)
    if fit.complete:
        return
    what, fix = report(expected, state_dict, fit,
                       local_metadata.get(SOURCE_KEY))
    if _partial_load_allowed():
        MMLogger.get_current_instance().warning(
            f'Loading the part that fits ({PARTIAL_LOAD_ENV}): {what}. '
            'The rest keeps its initial values.')
        return
    raise CheckpointMismatchError(
        f'Refused to load weights that do not fit the model: {what}. {fix} '
        f'{OPT_OUT}')


def _marked(module) -> bool:
    # From the instance dict: a module may be mid-construction (torch's
    # compiled wrapper has no attributes until its first child is set).
    return bool(vars(module).get(MARK, False))


def _hook(module: nn.Module) -> None:
    if not _marked(module):
        module.register_load_state_dict_pre_hook(_check_before_loading)
        vars(module)[MARK] = True


_watched_types: tuple = ()


def _on_registration(module, name, submodule):
    """Torch's module registration hook: hook every module that is, or
    has a child that is, a watched type (see :func:`watch`)."""
    if isinstance(module, _watched_types) or (isinstance(submodule, nn.Module)
                                              and _marked(submodule)):
        _hook(module)
    return None


def watch(module_type: type) -> None:
    """Check every load into models that hold a ``module_type``."""
    global _watched_types
    if not _watched_types:
        nn.modules.module.register_module_module_registration_hook(
            _on_registration)
    if module_type not in _watched_types:
        _watched_types += (module_type, )
