"""Locating the reference material of the parity tests.

The upstream key lists are committed under ``tests/data``. The authors'
model file and the parity fixtures are not copied into the repository: they
are read from the folder named by the one setting
``MMEFFICIENTMOD_REFERENCE``, which holds ``upstream/EfficientMod.py`` and
``parity/efficientmod_<arch>.pt``. ``.ci/run`` sets it; elsewhere the tests
that need it are skipped with a reason that says how to set it.
"""
import os
import os.path as osp

import pytest
import torch
from _detseg_utils import REPO

DATA = osp.join(REPO, 'tests', 'data')
UPSTREAM_KEYS = osp.join(DATA, 'upstream-keys')
REFERENCE_ENV = 'MMEFFICIENTMOD_REFERENCE'
ARCHS = ('xxs', 'xs', 's', 's_conv')


def reference_path(*parts: str) -> str:
    """A file of the reference folder, or a skip that says how to get it."""
    root = os.environ.get(REFERENCE_ENV, '')
    path = osp.join(root, *parts)
    if not root or not osp.isfile(path):
        where = f'{REFERENCE_ENV}={root!r}' if root else f'{REFERENCE_ENV} unset'
        pytest.skip(f'{"/".join(parts)} not found ({where}); set '
                    f'{REFERENCE_ENV} to the reference folder that holds '
                    'upstream/EfficientMod.py and parity/')
    return path


def upstream_model_file() -> str:
    """The authors' model file; skips where it or timm is missing."""
    path = reference_path('upstream', 'EfficientMod.py')
    pytest.importorskip('timm', reason="the authors' model file imports timm")
    return path


def load_parity_fixture(arch: str) -> dict:
    return torch.load(
        reference_path('parity', f'efficientmod_{arch}.pt'), weights_only=True)


def upstream_shapes(arch: str) -> dict:
    """Every key of the released checkpoint of ``arch`` with its shape."""
    shapes = {}
    with open(osp.join(UPSTREAM_KEYS, f'efficientmod_{arch}.txt')) as f:
        for line in f:
            key, shape = line.split()
            shapes[key] = tuple(int(s) for s in shape.split('x'))
    return shapes
