"""Loading backbone weights for ``init_cfg=dict(type='Pretrained', ...)``."""
from typing import Dict, Optional

from .convert_released import (NotEfficientModCheckpoint, _describe,
                               convert_checkpoint, is_upstream_checkpoint)
from .keys import strip_prefix
from .safe_load import open_checkpoint
from .strict_loading import tag_source


def open_in_our_layout(filename: str, use_ema: bool = False):
    """Load a checkpoint safely; a released (upstream) one comes back
    converted to this project's layout (``use_ema``: its EMA weights)."""
    checkpoint = open_checkpoint(filename)
    if is_upstream_checkpoint(checkpoint):
        checkpoint = convert_checkpoint(checkpoint, use_ema=use_ema)
    return checkpoint


def load_backbone_weights(filename: str,
                          prefix: Optional[str] = None,
                          use_ema: bool = False) -> Dict:
    """Backbone state dict in this project's naming from any EfficientMod checkpoint.

    Args:
        filename (str): Path or URL of a released upstream checkpoint or of a
            checkpoint saved by this project (or made by the converter).
        prefix (str, optional): Prefix of the backbone's keys in a whole-model
            checkpoint. ``None`` means ``'backbone.'`` when the checkpoint has
            such keys, else no prefix.
        use_ema (bool): Take the EMA weights of an ImageNet checkpoint.

    Returns:
        dict: The backbone's weights, without prefix.
    """
    checkpoint = open_in_our_layout(filename, use_ema)
    state_dict = checkpoint.get('state_dict', checkpoint) if isinstance(
        checkpoint, dict) else None
    if not isinstance(state_dict, dict):
        raise NotEfficientModCheckpoint(
            f'{filename} is not an EfficientMod checkpoint: found {_describe(checkpoint)}.'
        )
    if prefix is None:
        prefix = 'backbone.' if any(
            k.startswith('backbone.') for k in state_dict) else ''
    selected = strip_prefix(state_dict, prefix, drop_others=True)
    tag_source(selected, filename)  # names the file if it does not fit
    if 'stem.conv.weight' not in selected:
        raise NotEfficientModCheckpoint(
            f'{filename} holds no EfficientMod backbone under prefix {prefix!r}: '
            f'found {_describe(checkpoint)}. Convert released checkpoints with '
            'tools/model_converters/efficientmod_to_mm.py, or set the prefix.')
    return selected
