"""Fixtures shared by the test suite.

Markers (registered in ``pytest.ini``): ``e2e`` marks tests that train or
start subprocesses (``pytest -m "not e2e"`` runs the fast rest); ``cuda``
marks tests that need a CUDA GPU, reported as skipped where none is present.
Paths and small helpers live in ``_detseg_utils.py``; the reference fixtures
are found by ``parity.py``.
"""
import pytest
import torch
from _detseg_utils import load_tool as _load_tool
from _detseg_utils import make_tiny_data

from mmefficientmod import synthetic_data


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason='needs a CUDA GPU; none is present')
    for item in items:
        if 'cuda' in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope='session')
def load_tool():
    """``load_tool('analysis_tools/benchmark')`` imports a tool script."""
    return _load_tool


@pytest.fixture(scope='session')
def tiny_data(tmp_path_factory):
    """``(coco_root, ade20k_root)``: small embedded datasets, made once per
    session; tests that alter data copy it first."""
    return make_tiny_data(str(tmp_path_factory.mktemp('tiny_data')))


@pytest.fixture(scope='session')
def embedded_imagenet(tmp_path_factory):
    """A small embedded ImageNet (4 classes, 4 train and 4 val images each,
    64 px), made once per session."""
    root = str(tmp_path_factory.mktemp('embedded') / 'imagenet')
    synthetic_data.make_imagenet(
        root, num_per_class_train=4, num_per_class_val=4, img_size=64)
    return root
