"""Locating the reference fixtures of the parity tests.

The xxs parity fixture and the upstream key lists are committed under
``tests/data``; the larger s fixture is read from the shared reference folder
beside the repository (or ``$EFFICIENTMOD_PARITY_DIR``) when it is there.
"""
import os
import os.path as osp

import pytest
import torch
from _detseg_utils import REPO

DATA = osp.join(REPO, 'tests', 'data')
UPSTREAM_KEYS = osp.join(DATA, 'upstream-keys')
SEARCH_DIRS = [
    os.environ.get('EFFICIENTMOD_PARITY_DIR', ''),
    osp.join(REPO, '..', 'shared', 'reference', 'parity'),
    osp.join(DATA, 'parity'),
]
ARCHS = ('xxs', 'xs', 's', 's_conv')


def parity_fixture_path(arch: str) -> str:
    for folder in SEARCH_DIRS:
        path = osp.join(folder, f'efficientmod_{arch}.pt')
        if folder and osp.isfile(path):
            return path
    pytest.skip(f'parity fixture efficientmod_{arch}.pt not found; set '
                'EFFICIENTMOD_PARITY_DIR to the folder that holds it')


def load_parity_fixture(arch: str) -> dict:
    return torch.load(parity_fixture_path(arch), weights_only=True)


def upstream_shapes(arch: str) -> dict:
    """Every key of the released checkpoint of ``arch`` with its shape."""
    shapes = {}
    with open(osp.join(UPSTREAM_KEYS, f'efficientmod_{arch}.txt')) as f:
        for line in f:
            key, shape = line.split()
            shapes[key] = tuple(int(s) for s in shape.split('x'))
    return shapes
