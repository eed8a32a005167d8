"""Fixes for gaps of the OpenMMLab 2.0 stack on today's PyTorch.

The one place where :mod:`mmefficientmod` changes another library, and only
on request: importing :mod:`mmefficientmod.apply_stack_fixes` (which this
project's configs list in ``custom_imports`` and its tools import) runs
:func:`apply_all`, which applies each fix of :data:`FIXES` only where the
installed versions have its gap; ``import mmefficientmod`` applies none.
docs/safety_and_compat.md says what each fix does and why; each has a test
that fails without it.
"""
import importlib.metadata
from typing import Callable, List, NamedTuple, Optional

import mmengine
import torch
from mmengine.utils import digit_version

from .checkpoint.safe_load import load_local_checkpoint, load_url_checkpoint

# The mmengine releases whose gaps the fixes below fill (0.10.7 is the last).
MMENGINE_FIXED_BELOW = digit_version('0.11.0')
# mmdeploy's last release (2023-12) has the gaps of the mmdeploy fixes.
MMDEPLOY_LAST_WITH_GAPS = digit_version('1.3.1')


class StackFix(NamedTuple):
    """A fix, the check that the installed stack needs it, and how to apply."""
    name: str
    needed: Callable[[], bool]
    apply: Callable[[], None]


def _old_mmengine() -> bool:
    return digit_version(mmengine.__version__) < MMENGINE_FIXED_BELOW


def _accelerator_present() -> bool:
    from mmengine.device import (is_mlu_available, is_musa_available,
                                 is_npu_available)
    return (torch.cuda.is_available() or is_npu_available()
            or is_mlu_available() or is_musa_available())


def _replace_once(owner, name: str, make_replacement) -> None:
    """Set ``owner.name`` to ``make_replacement(original)``, once per process."""
    original = getattr(owner, name)
    if getattr(original, '_mmefficientmod_fix', False):
        return
    replacement = make_replacement(original)
    replacement._mmefficientmod_fix = True
    setattr(owner, name, replacement)


def _safe_checkpoints_needed() -> bool:
    return (_old_mmengine()
            and digit_version(torch.__version__) >= digit_version('2.6.0'))


def apply_safe_checkpoints() -> None:
    """Route mmengine's local and http(s) checkpoint loading through the
    allowlist of :mod:`mmefficientmod.checkpoint.safe_load`."""
    from mmengine.runner import checkpoint as mm_checkpoint
    loader = mm_checkpoint.CheckpointLoader
    loader.register_scheme('', load_local_checkpoint, force=True)
    loader.register_scheme(['http://', 'https://'],
                           load_url_checkpoint,
                           force=True)
    # The open-mmlab://, torchvision:// and mmcls:// loaders call these.
    mm_checkpoint.load_from_local = load_local_checkpoint
    mm_checkpoint.load_from_http = load_url_checkpoint


def _module_on_cpu(module) -> bool:
    params = list(module.parameters())
    return bool(params) and all(p.device.type == 'cpu' for p in params)


def apply_cpu_distributed() -> None:
    """Let mmengine's ``pytorch`` launcher and DDP wrapper run on CPU only."""
    from mmengine.dist import utils as dist_utils
    from mmengine.model.wrappers import MMDistributedDataParallel

    def cpu_init_dist(init_pytorch):

        def _init_dist_pytorch(backend, init_backend='torch', **kwargs):
            if init_backend != 'torch':
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


def apply_empty_dataset_error() -> None:
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


def _installed_version(distribution: str) -> Optional[str]:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _old_mmdeploy() -> bool:
    version = _installed_version('mmdeploy')
    return (version is not None
            and digit_version(version) <= MMDEPLOY_LAST_WITH_GAPS)


def _mmdeploy_torchscript_export_needed() -> bool:
    return (_old_mmdeploy()
            and digit_version(torch.__version__) >= digit_version('2.9.0'))


def _export_with_torchscript(*args, **kwargs):
    """mmdeploy's rewriter of ``torch.onnx.export``: the TorchScript
    exporter unless the caller chose."""
    from mmdeploy.core import FUNCTION_REWRITER
    kwargs.setdefault('dynamo', False)
    return FUNCTION_REWRITER.get_context().origin_func(*args, **kwargs)


def apply_mmdeploy_torchscript_export() -> None:
    """Register :func:`_export_with_torchscript` with mmdeploy, for every
    backend: it replaces ``torch.onnx.export`` only inside mmdeploy's export
    (its ``RewriterContext``)."""
    from mmdeploy.core import FUNCTION_REWRITER
    records = FUNCTION_REWRITER._registry._rewrite_records
    if any(
            record.get('_object') is _export_with_torchscript
            for record in records.get('torch.onnx.export', [])):
        return
    FUNCTION_REWRITER.register_rewriter('torch.onnx.export')(
        _export_with_torchscript)


def _mmdeploy_roi_align_symbolic_needed() -> bool:
    if not _old_mmdeploy():
        return False
    from torch.onnx import symbolic_opset9
    return not hasattr(symbolic_opset9, '_cast_Long')


def _cast_long(g, input, non_blocking):
    """``symbolic_opset9._cast_Long`` of older torch: ``input`` as int64."""
    return g.op('Cast', input, to_i=torch.onnx.TensorProtoDataType.INT64)


def apply_mmdeploy_roi_align_symbolic() -> None:
    """Give ``torch.onnx.symbolic_opset9`` the ``_cast_Long`` that
    mmdeploy's RoIAlign symbolic imports."""
    from torch.onnx import symbolic_opset9
    if not hasattr(symbolic_opset9, '_cast_Long'):
        symbolic_opset9._cast_Long = _cast_long


def _mmdeploy_openvino_needed() -> bool:
    openvino = _installed_version('openvino')
    return (_old_mmdeploy() and openvino is not None
            and digit_version(openvino) >= digit_version('2024.0.0'))


def apply_mmdeploy_openvino() -> None:
    """Route mmdeploy's OpenVINO conversion and inference through
    :mod:`mmefficientmod.deploy.mmdeploy_openvino`."""
    from mmdeploy.backend.openvino import onnx2openvino, wrapper

    from .deploy import mmdeploy_openvino
    _replace_once(onnx2openvino, 'from_onnx',
                  lambda stock: mmdeploy_openvino.from_onnx)
    _replace_once(wrapper, 'OpenVINOWrapper',
                  lambda stock: mmdeploy_openvino.OpenVINORuntimeWrapper)


FIXES = (
    StackFix('safe_checkpoints', _safe_checkpoints_needed,
             apply_safe_checkpoints),
    StackFix('cpu_distributed',
             lambda: _old_mmengine() and not _accelerator_present(),
             apply_cpu_distributed),
    StackFix('empty_dataset_error', _old_mmengine, apply_empty_dataset_error),
    StackFix('mmdeploy_torchscript_export',
             _mmdeploy_torchscript_export_needed,
             apply_mmdeploy_torchscript_export),
    StackFix('mmdeploy_roi_align_symbolic',
             _mmdeploy_roi_align_symbolic_needed,
             apply_mmdeploy_roi_align_symbolic),
    StackFix('mmdeploy_openvino', _mmdeploy_openvino_needed,
             apply_mmdeploy_openvino),
)


def apply_all() -> List[str]:
    """Apply the fixes the installed stack needs; return their names."""
    applied = []
    for fix in FIXES:
        if fix.needed():
            fix.apply()
            applied.append(fix.name)
    return applied
