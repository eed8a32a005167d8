"""Renaming the keys of a state dict: the one prefix helper.

``strip_prefix(sd, 'module.')`` does what mmengine's
``load_checkpoint(..., revise_keys=[(r'^module\\.', '')])`` does to the keys
of a wrapped model (DDP, EMA's averaged copy), for the places that need the
state dict itself rather than a model loaded from it.
"""
from collections import OrderedDict
from typing import Dict

#: The prefix of the weights of a wrapped model (DDP, ``EMAHook``'s copy).
WRAPPER_PREFIX = 'module.'


def strip_prefix(state_dict: Dict,
                 prefix: str = WRAPPER_PREFIX,
                 drop_others: bool = False) -> Dict:
    """The entries of ``state_dict`` with ``prefix`` removed from their keys.

    Args:
        state_dict (dict): Weights by name.
        prefix (str): The prefix to remove (``''`` removes nothing).
        drop_others (bool): Leave out the entries whose keys lack the prefix
            (selecting a sub-module's weights); by default they are kept
            as they are.
    """
    stripped = OrderedDict()
    for key, value in state_dict.items():
        if key.startswith(prefix):
            stripped[key[len(prefix):]] = value
        elif not drop_others:
            stripped[key] = value
    return stripped
