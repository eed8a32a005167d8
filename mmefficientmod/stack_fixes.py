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
* **Multi-process training without CUDA.** mmengine 0.10.7's
  ``init_dist('pytorch')`` calls ``torch.cuda.set_device`` and the configs
  ask for the ``nccl`` backend, and its runner passes
  ``device_ids=[LOCAL_RANK]`` to ``DistributedDataParallel``, which torch
  rejects for a CPU module. When no CUDA device (nor another accelerator
  mmengine knows) is present, we initialise the process group without
  ``set_device`` and with ``gloo`` in place of ``nccl``, and drop
  ``device_ids``/``output_device`` for modules whose parameters are all on the
  CPU. With CUDA nothing changes. ``SyncBatchNorm`` still needs GPUs (torch
  has no CPU implementation); CPU configs use ``BN``.
* **Empty datasets.** When no sample is left after loading and filtering
  (e.g. a COCO file without annotations and ``filter_empty_gt=True``, or an
  image folder without images), mmengine 0.10.7's ``BaseDataset`` fails in
  its serialisation with "need at least one array to concatenate". We raise
  a ``ValueError`` naming the dataset, its annotation file and folders
  instead. Non-empty datasets are untouched.
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


def _accelerator_present() -> bool:
    from mmengine.device import (is_mlu_available, is_musa_available,
                                 is_npu_available)
    return (torch.cuda.is_available() or is_npu_available()
            or is_mlu_available() or is_musa_available())


def _module_on_cpu(module) -> bool:
    params = list(module.parameters())
    return bool(params) and all(p.device.type == 'cpu' for p in params)


def _replace_once(owner, name: str, make_replacement) -> None:
    """Set ``owner.name`` to ``make_replacement(original)``, once per process."""
    original = getattr(owner, name)
    if getattr(original, '_mmefficientmod_fix', False):
        return
    replacement = make_replacement(original)
    replacement._mmefficientmod_fix = True
    setattr(owner, name, replacement)


def apply_cpu_distributed_fix() -> None:
    """Let mmengine's ``pytorch`` launcher and DDP wrapper run on CPU only."""
    from mmengine.dist import utils as dist_utils
    from mmengine.model.wrappers import MMDistributedDataParallel

    def cpu_init_dist(init_pytorch):

        def _init_dist_pytorch(backend, init_backend='torch', **kwargs):
            if _accelerator_present() or init_backend != 'torch':
                return init_pytorch(
                    backend, init_backend=init_backend, **kwargs)
            if backend == 'nccl':
                backend = 'gloo'
            torch.distributed.init_process_group(backend=backend, **kwargs)

        return _init_dist_pytorch

    def cpu_ddp_init(ddp_init):

        def __init__(self, module, *args, **kwargs):
            if kwargs.get('device_ids') is not None and _module_on_cpu(module):
                kwargs['device_ids'] = None
                kwargs.pop('output_device', None)
            ddp_init(self, module, *args, **kwargs)

        return __init__

    _replace_once(dist_utils, '_init_dist_pytorch', cpu_init_dist)
    _replace_once(MMDistributedDataParallel, '__init__', cpu_ddp_init)


def apply_empty_dataset_fix() -> None:
    """Give empty datasets a clear error instead of a numpy one."""
    from mmengine.dataset import BaseDataset

    def check_not_empty(serialize):

        def _serialize_data(self):
            if len(self.data_list) == 0:
                raise ValueError(
                    f'{type(self).__name__} is empty: no samples were left '
                    f'after loading and filtering (ann_file={self.ann_file!r}, '
                    f'data_root={self.data_root!r}, '
                    f'data_prefix={self.data_prefix!r}, '
                    f'filter_cfg={self.filter_cfg!r}). Check that the '
                    f'annotation file lists images with annotations and that '
                    f'the image folder holds the images; '
                    f'filter_cfg.filter_empty_gt=False keeps images without '
                    f'objects.')
            return serialize(self)

        return _serialize_data

    _replace_once(BaseDataset, '_serialize_data', check_not_empty)


def apply_all() -> None:
    apply_checkpoint_fix()
    apply_cpu_distributed_fix()
    apply_empty_dataset_fix()
