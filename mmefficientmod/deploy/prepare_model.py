"""Loading weights into built models and folding copies, for the tools."""
import copy
from typing import List

import torch.nn as nn

from ..checkpoint.loading import open_in_our_layout
from ..models import EfficientMod


def load_weights(model: nn.Module, checkpoint: str) -> List[str]:
    """Load a converted or a released (upstream) checkpoint.

    Returns:
        list[str]: The model's keys missing from the checkpoint.
    """
    ckpt = open_in_our_layout(checkpoint)
    state_dict = ckpt.get('state_dict', ckpt)
    result = model.load_state_dict(state_dict, strict=False)
    return list(result.missing_keys)


def find_backbone(model: nn.Module) -> nn.Module:
    """The ``EfficientMod`` of a model (or the model itself)."""
    backbone = getattr(model, 'backbone', model)
    if not isinstance(backbone, EfficientMod):
        raise TypeError(f'The model has no EfficientMod backbone (found '
                        f'{type(backbone).__name__}).')
    return backbone


def deploy_copy(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` with its backbone in the inference form."""
    new = copy.deepcopy(model).eval()
    find_backbone(new).switch_to_deploy()
    return new
