"""The EfficientMod arch table and the checks of ``arch`` and
``out_indices``.

A leaf module (it imports nothing of the package), so that the backbone, the
checkpoint mapping and the config checks all read the same table.
"""
import copy
import numbers
from typing import Any, Dict, List, Sequence, Union

NUM_STAGES = 4
ARCH_FIELDS = ('widths', 'depths', 'attention_depths', 'ratios',
               'attention_mlp_ratios')

#: The paper's four networks: per-stage widths, modulation blocks, attention
#: blocks after them, the modulation expansion ratios (cycled anew in every
#: stage) and the attention blocks' feed-forward ratios.
ARCH_ZOO = {
    'xxs':
    dict(
        widths=[32, 64, 128, 256],
        depths=[2, 2, 6, 2],
        attention_depths=[0, 0, 1, 2],
        ratios=[1, 6],
        attention_mlp_ratios=[4, 4, 4, 4]),
    'xs':
    dict(
        widths=[32, 64, 144, 288],
        depths=[3, 3, 4, 2],
        attention_depths=[0, 0, 3, 3],
        ratios=[1, 4],
        attention_mlp_ratios=[4, 4, 4, 4]),
    's':
    dict(
        widths=[32, 64, 144, 312],
        depths=[4, 4, 8, 4],
        attention_depths=[0, 0, 4, 4],
        ratios=[1, 6],
        attention_mlp_ratios=[4, 4, 4, 5]),
    's_conv':
    dict(
        widths=[40, 80, 160, 344],
        depths=[4, 4, 12, 8],
        attention_depths=[0, 0, 0, 0],
        ratios=[1, 6],
        attention_mlp_ratios=[4, 4, 4, 4]),
}

#: Lower bound and meaning of the per-stage integer lists of an arch dict.
STAGE_LISTS = {
    'widths': (1, 'channels of each stage'),
    'depths': (0, 'modulation blocks of each stage'),
    'attention_depths': (0, 'attention blocks of each stage'),
    'attention_mlp_ratios': (1, "attention blocks' feed-forward ratio"),
}


def is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _ints(values: Any, low: int) -> bool:
    return (isinstance(values, Sequence) and not isinstance(values, str)
            and all(is_int(v) and v >= low for v in values))


def argument_error(name: str, expected: str, value: Any) -> ValueError:
    """The one form of the backbone's argument errors."""
    return ValueError(
        f'EfficientMod: {name} must be {expected}; got {value!r}.')


def parse_arch(arch: Union[str, Dict]) -> Dict:
    """Check ``arch`` (a name or a dict) and return its settings as lists."""
    if isinstance(arch, str):
        if arch not in ARCH_ZOO:
            raise ValueError(
                f'Unknown EfficientMod arch {arch!r}; choose one of '
                f'{sorted(ARCH_ZOO)} or pass a dict with the keys '
                f'{ARCH_FIELDS}.')
        return copy.deepcopy(ARCH_ZOO[arch])
    if not isinstance(arch, dict):
        raise argument_error('arch', f'one of {sorted(ARCH_ZOO)} or a dict',
                             arch)
    unknown = sorted(set(arch) - set(ARCH_FIELDS))
    missing = [k for k in ARCH_FIELDS if k not in arch]
    if unknown or missing:
        raise ValueError(f'EfficientMod: the arch dict has unknown keys '
                         f'{unknown} and lacks {missing}; its keys are '
                         f'{ARCH_FIELDS}.')
    for key, (low, meaning) in STAGE_LISTS.items():
        if not _ints(arch[key], low) or len(arch[key]) != NUM_STAGES:
            raise argument_error(
                f'arch[{key!r}]', f'{NUM_STAGES} integers >= {low}, one per '
                f'stage ({meaning})', arch[key])
    if not _ints(arch['ratios'], 1) or not arch['ratios']:
        raise argument_error(
            "arch['ratios']", 'one or more integers >= 1 (expansion ratios '
            'of the modulation blocks, cycled in every stage)', arch['ratios'])
    if sum(arch['depths']) + sum(arch['attention_depths']) == 0:
        raise argument_error('arch', 'an arch with at least one block', arch)
    return {k: list(arch[k]) for k in ARCH_FIELDS}


def parse_out_indices(out_indices: Union[int, Sequence[int]]) -> List[int]:
    """Sorted, non-negative stage indices; negative ones count from the end."""
    indices = [out_indices] if is_int(out_indices) else out_indices
    if (not isinstance(indices, Sequence) or isinstance(indices, str)
            or not indices or not all(
                is_int(i) and -NUM_STAGES <= i < NUM_STAGES for i in indices)):
        raise argument_error(
            'out_indices', f'in [-{NUM_STAGES}, {NUM_STAGES - 1}] (0-based '
            'stage numbers, negative ones counting from the end): an integer '
            'or a non-empty sequence of them', out_indices)
    return sorted({i % NUM_STAGES for i in indices})
