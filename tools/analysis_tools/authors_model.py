"""The authors' model file (github.com/ma-xu/EfficientMod), loaded at run time.

Only for side-by-side measurement (the benchmark and the tests): nothing of
the authors' code is part of this project. :func:`load_upstream_module`
imports their ``models/EfficientMod.py`` from a path (it imports ``timm``);
:func:`build_upstream` builds their classifier of one of our archs and
:func:`copy_weights_to_upstream` gives it our weights (mapped by this
project's checkpoint converter).
"""
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


def load_upstream_module(path: str) -> ModuleType:
    """Import the authors' ``EfficientMod.py`` from ``path``.

    Args:
        path (str): Their model file, e.g. ``<checkout>/models/EfficientMod.py``.
    """
    if not osp.isfile(path):
        raise FileNotFoundError(
            f'No authors\' model file at {path!r}; pass the path of '
            'models/EfficientMod.py in a checkout of '
            'github.com/ma-xu/EfficientMod.')
    try:
        import timm  # noqa: F401
    except ImportError as err:
        raise ImportError('The authors\' model file imports timm; install it '
                          'with `pip install timm`.') from err
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
    if arch not in UPSTREAM_BUILDERS:
        raise ValueError(f'Unknown arch {arch!r}; the authors\' file has '
                         f'{sorted(UPSTREAM_BUILDERS)}.')
    return getattr(module, UPSTREAM_BUILDERS[arch])().eval()


@torch.no_grad()
def copy_weights_to_upstream(model: nn.Module, upstream: nn.Module) -> None:
    """Give the authors' classifier the weights of our classifier ``model``.

    The key map is the one of :func:`mmefficientmod.checkpoint.convert_released`
    (released -> ours), read backwards: each of the authors' tensors is
    stood in for by one filled with its index, so the converted value names
    its source key.

    Args:
        model (nn.Module): Our mmpretrain ``ImageClassifier`` (``backbone.*``,
            ``head.fc.*``), not switched to deploy.
        upstream (nn.Module): The authors' model of the same arch.
    """
    theirs = upstream.state_dict()
    names = list(theirs)
    markers = {
        k: torch.full(v.shape, float(i))
        for i, (k, v) in enumerate(theirs.items())
    }
    converted = convert_released({'model': markers})['state_dict']
    ours = model.state_dict()
    mapped = {}
    for key, marker in converted.items():
        if key not in ours:
            raise KeyError(f'Our model has no {key!r}: build the classifier '
                           'of the same arch.')
        source = names[int(marker.flatten()[0])]
        if ours[key].shape != theirs[source].shape:
            raise ValueError(
                f'{key}: our shape {tuple(ours[key].shape)}, the authors\' '
                f'{tuple(theirs[source].shape)}; build the same arch and '
                'number of classes.')
        mapped[source] = ours[key]
    left = set(theirs) - set(mapped)
    if left:
        raise KeyError(f"The authors' weights {sorted(left)[:5]} have no "
                       'counterpart in our model.')
    upstream.load_state_dict(mapped, strict=True)
