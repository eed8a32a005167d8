"""Fixes for gaps of the pinned OpenMMLab 2.0 stack on today's PyTorch.

Importing :mod:`mmefficientmod` applies them once; each is small, keyed to a
specific library version's behaviour, and has a test that fails without it.

* **Checkpoints on torch >= 2.6.** ``torch.load`` now defaults to
  ``weights_only=True``, but mmengine 0.10.7 calls it without the argument,
  while its own training checkpoints hold Python objects (the message hub's
  history, numpy scalars, the config). Loading such a checkpoint, and so
  ``resume=True``, fails with an ``UnpicklingError``. We re-register
  mmengine's local-file and HTTP loaders to pass ``weights_only=False``, which
  restores the behaviour mmengine was written for. As before torch 2.6, only
  load checkpoints from sources you trust.
"""
import os.path as osp

import torch
from mmengine.runner.checkpoint import CheckpointLoader


def _load_local_checkpoint(filename, map_location):
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'{filename} can not be found.')
    return torch.load(filename, map_location=map_location, weights_only=False)


def _load_url_checkpoint(filename, map_location):
    return torch.hub.load_state_dict_from_url(
        filename, map_location=map_location, weights_only=False)


def apply_checkpoint_fix() -> None:
    """Make mmengine's local and HTTP checkpoint loaders work on torch >= 2.6."""
    CheckpointLoader.register_scheme('', _load_local_checkpoint, force=True)
    CheckpointLoader.register_scheme(
        ['http://', 'https://'], _load_url_checkpoint, force=True)


def apply_all() -> None:
    apply_checkpoint_fix()
