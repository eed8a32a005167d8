"""Clear errors for the two commonest config mistakes, in every tool:
backbone widths that differ from the ``in_channels`` of the neck or head
reading them (else a conv's channel error at the first forward pass), and
class counts that differ between the heads, ``data_preprocessor`` and the
dataset (else an assertion or index error deep in a loss, or mmdet training
silently with the wrong classes). :class:`EfficientModConfigCheckHook` runs
them from the runner, so the libraries' own tools report them too; it also
refuses test checkpoints that do not fit the model.
"""
from typing import Dict, List, Optional, Sequence, Tuple

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS

from ..arch import parse_arch, parse_out_indices
from ..checkpoint import CheckpointMismatchError, check_fit, strip_prefix
from ..config_tree import walk_config
from .safety_hooks import is_training_run

BACKBONE_TYPES = ('EfficientMod', 'mmefficientmod.EfficientMod')


class ConfigError(ValueError):
    """A config whose parts do not fit together; the message names the fix."""


def _efficientmod_outputs(backbone: Dict) -> Optional[Tuple[str, List[int]]]:
    """(arch description, widths of the outputs) of an EfficientMod config."""
    if not isinstance(backbone, dict) or \
            backbone.get('type') not in BACKBONE_TYPES:
        return None
    arch = backbone.get('arch', 'xxs')
    out_indices = backbone.get('out_indices', (0, 1, 2, 3))
    all_widths = parse_arch(arch)['widths']
    stages = parse_out_indices(out_indices)
    widths = [all_widths[i] for i in stages]
    if backbone.get('out_type') == 'avg_featmap':
        widths = widths[-1:]
    name = f"'{arch}'" if isinstance(arch, str) else 'a custom arch'
    return (f'EfficientMod arch {name} (stage widths {all_widths}) with '
            f'out_indices={tuple(stages)} gives '
            f'{len(widths)} feature map(s) of widths {widths}'), widths


def _selected(widths: List[int], in_index) -> object:
    if isinstance(in_index, Sequence):
        return [widths[i] for i in in_index]
    return widths[in_index]


def _head_expectations(model: Dict, widths: List[int]):
    """``(config path, value, expected)`` for the heads that read the
    backbone directly (no neck, or a neck without channels)."""
    expectations = []
    for key in ('head', 'decode_head', 'auxiliary_head'):
        heads = model.get(key)
        heads = heads if isinstance(heads, list) else [heads]
        for i, head in enumerate(heads):
            if not isinstance(head, dict) or 'in_channels' not in head:
                continue
            path = f'model.{key}' + (f'[{i}]' if len(heads) > 1 else '')
            in_index = head.get('in_index', -1)
            expectations.append((f'{path}.in_channels', head['in_channels'],
                                 _selected(widths, in_index)))
            if 'c1_in_channels' in head:  # DeepLabV3+ reads the first output
                expectations.append((f'{path}.c1_in_channels',
                                     head['c1_in_channels'], widths[0]))
    return expectations


def width_errors(model: Dict) -> List[str]:
    """Messages for every neck/head ``in_channels`` that the EfficientMod
    backbone's outputs do not match; empty when all fit."""
    found = _efficientmod_outputs(model.get('backbone'))
    if found is None:
        return []
    description, widths = found
    neck = model.get('neck')
    neck = neck[0] if isinstance(neck, list) and neck else neck
    if isinstance(neck, dict) and 'in_channels' in neck:
        expected = widths if isinstance(neck['in_channels'], Sequence) \
            else widths[-1]
        expectations = [('model.neck.in_channels', neck['in_channels'],
                         expected)]
    else:
        expectations = _head_expectations(model, widths)
    errors = []
    for path, value, expected in expectations:
        value = list(value) if isinstance(value, Sequence) else value
        if value != expected:
            compact = str(expected).replace(' ', '')
            errors.append(
                f'{description}, but {path}={value}. Set {path}={expected} '
                f'(e.g. --cfg-options {path}={compact}), or choose the '
                'arch/out_indices whose widths it was written for.')
    return errors


def _class_counts(node, path: str) -> List[Tuple[str, int]]:
    """``(path, num_classes)`` of every head, leaving out region-proposal
    heads (one objectness class by design) and distillation teachers (their
    own label space)."""
    return [(f'{where}.num_classes', part['num_classes'])
            for where, part in walk_config(
                node, path, skip=('rpn_head', 'teacher'))
            if isinstance(part.get('num_classes'), int)]


def config_class_counts(cfg: Dict) -> List[Tuple[str, int]]:
    """Every class count of a config: the model's heads and its
    ``data_preprocessor`` (mmpretrain's batch augments' one-hot width)."""
    counts = _class_counts(cfg.get('model', {}), 'model')
    preprocessor = cfg.get('data_preprocessor')
    if isinstance(preprocessor, dict) and \
            isinstance(preprocessor.get('num_classes'), int):
        counts.append(
            ('data_preprocessor.num_classes', preprocessor['num_classes']))
    return counts


def _counts_agree(counts: List[Tuple[str, int]], target: int) -> bool:
    # A binary segmentor may predict one sigmoid channel for 2 classes.
    return all(n == target or (n == 1 and target == 2) for _, n in counts)


def class_count_error(cfg: Dict,
                      classes: Optional[Sequence] = None,
                      split: str = 'training') -> Optional[str]:
    """A message naming every place to change when the class counts of the
    config (and of the dataset, when its ``classes`` are given) differ."""
    counts = config_class_counts(cfg)
    if not counts:
        return None
    if classes is not None:
        target = len(classes)
        names = ', '.join(map(str, classes))
        names = names[:200] + ', ...' if len(names) > 200 else names
        source = f'the {split} dataset has {target} classes ({names})'
    else:
        target = max(n for _, n in counts)
        source = None
    if _counts_agree(counts, target):
        return None
    places = ', '.join(f'{p}={n}' for p, n in counts)
    fix = ' '.join(f'{p}={target}' for p, _ in counts)
    if source is None:
        return (f'Class count mismatch: {places}. They must all be the '
                f'number of classes of the dataset; set every one of them, '
                f'e.g. --cfg-options {fix}.')
    return (f'Class count mismatch: {places}, but {source}. Set every one '
            f'of them to the dataset\'s class count (e.g. --cfg-options '
            f'{fix}) or give the dataset the classes the model was built '
            f'for (its metainfo=dict(classes=...)).')


def check_config(cfg: Dict) -> None:
    """Raise :class:`ConfigError` for mismatched widths or class counts that
    can be seen in the config alone."""
    errors = width_errors(cfg.get('model', {}))
    message = class_count_error(cfg)
    if message:
        errors.append(message)
    if errors:
        raise ConfigError('\n'.join(errors))


@HOOKS.register_module()
class EfficientModConfigCheckHook(Hook):
    """Stop before anything runs when the config's parts do not fit, and
    keep checkpoints honest.

    Before the run (model weights not yet loaded), checks the EfficientMod
    backbone's output widths against the neck's or heads' ``in_channels``,
    and the class counts of the heads and ``data_preprocessor`` against each
    other; before training and testing, against the dataset's classes. After
    a checkpoint is read (through the runner's public API): a test or
    validation run refuses weights that do not fit the model; a training run
    from ``load_from`` logs one line naming what keeps its initial values.

    Args:
        strict_test_loading (bool): Refuse test and validation checkpoints
            that leave tensors of the model missing or of other shapes.
            ``False`` keeps mmengine's behaviour (a warning). Defaults to
            True.
    """
    priority = 'VERY_HIGH'

    def __init__(self, strict_test_loading: bool = True):
        self.strict_test_loading = strict_test_loading

    def before_run(self, runner) -> None:
        check_config(runner.cfg)

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        # As the runner loads it: the unwrapped model, without 'module.'.
        state = strip_prefix(checkpoint.get('state_dict', checkpoint))
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        source = f"the checkpoint {runner.cfg.get('load_from') or ''}".strip()
        try:
            check_fit(model.state_dict(), state, source)
        except CheckpointMismatchError as mismatch:
            training = is_training_run(runner)
            if self.strict_test_loading and not training:
                raise CheckpointMismatchError(
                    f'{mismatch} To test the part that fits on purpose: '
                    'tools/test.py --allow-partial-checkpoint, or '
                    "dict(type='EfficientModConfigCheckHook', "
                    'strict_test_loading=False) in custom_hooks.') from None
            verb = 'Training from' if training else 'Evaluating'
            runner.logger.warning(
                f'{mismatch}'.replace('Refused to load', verb, 1) +
                ' What does not fit keeps its initial values.')

    def _check_dataset(self, runner, loader, split: str) -> None:
        dataset = getattr(loader, 'dataset', None)
        metainfo = getattr(dataset, 'metainfo', None) or {}
        classes = metainfo.get('classes')
        if classes is None:
            return
        message = class_count_error(runner.cfg, classes, split)
        if message:
            raise ConfigError(message)

    def before_train(self, runner) -> None:
        self._check_dataset(runner, runner.train_dataloader, 'training')

    def before_test(self, runner) -> None:
        self._check_dataset(runner, runner.test_dataloader, 'test')
