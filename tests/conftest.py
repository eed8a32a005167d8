"""Fixtures shared by the test suite.

Markers (registered in ``pytest.ini``): ``e2e`` marks tests that train or
start subprocesses (``pytest -m "not e2e"`` runs the fast rest); ``cuda``
marks tests that need CUDA GPUs (``@pytest.mark.cuda`` one,
``@pytest.mark.cuda(gpus=2)`` two), reported as skipped, with the count that
was missing, where fewer are present. It is the suite's one GPU skip.
Paths and small helpers live in ``_detseg_utils.py``; the reference fixtures
are found by ``parity.py``.

The suite runs as this project's configs and tools do: with the stack fixes
applied (``mmefficientmod.apply_stack_fixes``). What a plain
``import mmefficientmod`` leaves unchanged is tested in a fresh interpreter
(tests/test_stack_fixes.py).
"""
import pytest
import torch
from _detseg_utils import load_tool as _load_tool
from _detseg_utils import make_tiny_data

import mmefficientmod.apply_stack_fixes  # noqa: F401


def pytest_collection_modifyitems(config, items):
    present = torch.cuda.device_count() if torch.cuda.is_available() else 0
    for item in items:
        marker = item.get_closest_marker('cuda')
        if marker is None:
            continue
        needed = marker.kwargs.get('gpus', 1)
        if present < needed:
            item.add_marker(
                pytest.mark.skip(
                    reason=f'needs {needed} CUDA GPU(s); {present} present: '
                    'run on a machine with them'))


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
    _load_tool('dataset_converters/synthetic_data').make_imagenet(
        root, num_per_class_train=4, num_per_class_val=4, img_size=64)
    return root
