"""The authors' model file (github.com/ma-xu/EfficientMod), loaded at run time
beside our classifier of the same arch, for side-by-side measurement (the
benchmark and the tests): none of their code is part of this project."""
import importlib.util
import os.path as osp
import sys
from types import ModuleType

import torch
import torch.nn as nn

from mmefficientmod.checkpoint import convert_released

# Our arch names -> the builders in the authors' file.
UPSTREAM_BUILDERS = {
    'xxs': 'efficientMod_xxs',
    'xs': 'efficientMod_xs',
    's': 'efficientMod_s',
    's_conv': 'efficientMod_s_Conv',
}


def arch_config(arch: str) -> str:
    """This project's ImageNet classifier config of ``arch``."""
    root = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
    return osp.join(root, 'configs', 'efficientmod',
                    f"efficientmod-{arch.replace('_', '-')}_8xb256_in1k.py")


def load_upstream_module(path: str) -> ModuleType:
    """Import the authors' model file (their ``models/EfficientMod.py``)."""
    spec = importlib.util.spec_from_file_location('upstream_efficientmod',
                                                  path)
    module = importlib.util.module_from_spec(spec)
    # timm's register_model looks the defining module up in sys.modules.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    missing = [b for b in UPSTREAM_BUILDERS.values() if not hasattr(module, b)]
    if missing:
        raise ValueError(f'{path!r} lacks the builders {missing}; is it the '
                         "authors' models/EfficientMod.py?")
    return module


def build_upstream(module: ModuleType, arch: str) -> nn.Module:
    """The authors' 1000-class classifier of ``arch``, in eval mode."""
    return getattr(module, UPSTREAM_BUILDERS[arch])().eval()


@torch.no_grad()
def copy_weights_to_upstream(model: nn.Module, upstream: nn.Module) -> None:
    """Give the authors' classifier ``upstream`` the weights of our
    ``ImageClassifier`` ``model`` of the same arch (not switched to deploy),
    through :func:`~mmefficientmod.checkpoint.convert_released` read
    backwards: each of their tensors filled with its index names its key."""
    theirs = upstream.state_dict()
    names = list(theirs)
    markers = {
        k: torch.full(v.shape, float(i))
        for i, (k, v) in enumerate(theirs.items())
    }
    converted = convert_released({'model': markers})['state_dict']
    ours = model.state_dict()
    missing = sorted(set(converted) - set(ours))
    if missing:
        raise KeyError(f'Our model has no {missing[:5]}: build the classifier '
                       'of the same arch.')
    # Strict: torch names any of their weights left out or of another shape.
    upstream.load_state_dict(
        {
            names[int(v.flatten()[0])]: ours[k]
            for k, v in converted.items()
        },
        strict=True)
