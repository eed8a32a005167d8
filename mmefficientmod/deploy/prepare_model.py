"""Loading weights into built models and folding copies, for the tools."""
import copy

import torch.nn as nn

from ..checkpoint import check_fit, read_checkpoint
from ..models import EfficientMod


def load_weights(model: nn.Module, checkpoint: str) -> None:
    """Load a trained, converted or released checkpoint that holds every
    tensor of ``model`` (else ``CheckpointMismatchError``); tensors with no
    place in it (a distillation teacher's) are ignored."""
    state_dict = read_checkpoint(checkpoint)['state_dict']
    check_fit(model.state_dict(), state_dict, f'the checkpoint {checkpoint}')
    model.load_state_dict(state_dict, strict=False)


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
