"""The EfficientMod arch table and its parsing.

A leaf module (it imports nothing of the package), so that the backbone, the
checkpoint mapping and the config checks all read the same table.
"""
import copy
from typing import Dict, List, Sequence, Union

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
        raise TypeError(f'arch must be a str or a dict, got {type(arch)}.')
    missing = [k for k in ARCH_FIELDS if k not in arch]
    if missing:
        raise ValueError(f'The arch dict lacks {missing}; a custom arch '
                         f'needs all of {ARCH_FIELDS}.')
    settings = {k: list(arch[k]) for k in ARCH_FIELDS}
    for key in ('widths', 'depths', 'attention_depths',
                'attention_mlp_ratios'):
        if len(settings[key]) != NUM_STAGES:
            raise ValueError(f'arch[{key!r}] needs {NUM_STAGES} values '
                             f'(one per stage), got {settings[key]}.')
    if not settings['ratios']:
        raise ValueError("arch['ratios'] needs at least one ratio.")
    return settings


def parse_out_indices(out_indices: Union[int, Sequence[int]]) -> List[int]:
    """Sorted, non-negative stage indices; negative ones count from the end."""
    if isinstance(out_indices, int):
        out_indices = [out_indices]
    parsed = []
    for index in out_indices:
        if not -NUM_STAGES <= index < NUM_STAGES:
            raise ValueError(
                f'out_indices must be in [-{NUM_STAGES}, {NUM_STAGES - 1}] '
                f'(0-based stage numbers); got {list(out_indices)}.')
        parsed.append(index % NUM_STAGES)
    return sorted(set(parsed))
