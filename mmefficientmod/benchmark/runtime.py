"""Building, converting and exporting models for the benchmark and export tools."""
import copy
import os.path as osp
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from .reference import ReferenceEfficientMod

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
ARCH_CONFIGS = {
    'xxs': 'configs/efficientmod/efficientmod-xxs_8xb256_in1k.py',
    'xs': 'configs/efficientmod/efficientmod-xs_8xb256_in1k.py',
    's': 'configs/efficientmod/efficientmod-s_8xb256_in1k.py',
    's_conv': 'configs/efficientmod/efficientmod-s-conv_8xb256_in1k.py',
}


def arch_config(arch: str) -> str:
    """Path of this project's ImageNet classifier config of ``arch``."""
    if arch not in ARCH_CONFIGS:
        raise ValueError(f'Unknown arch {arch!r}; choose from {sorted(ARCH_CONFIGS)}.')
    return osp.join(REPO_ROOT, ARCH_CONFIGS[arch])


def build_model_from_config(config: str, cfg_options: Optional[Dict] = None) -> nn.Module:
    """Build the ``model`` of an OpenMMLab config (mmpretrain, mmdet, mmseg)."""
    import logging

    import mmefficientmod  # noqa: F401  (registers EfficientMod)
    from mmengine.config import Config
    from mmengine.logging import MMLogger
    from mmengine.registry import MODELS, init_default_scope
    cfg = Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.WARNING)  # init_weights logs every parameter
    try:
        model = MODELS.build(cfg.model)
        if hasattr(model, 'init_weights'):
            model.init_weights()
    finally:
        logger.setLevel(level)
    return model.eval()


def load_weights(model: nn.Module, checkpoint: str) -> List[str]:
    """Load a converted or a released (upstream) checkpoint; returns missing keys."""
    from mmengine.runner.checkpoint import CheckpointLoader

    from ..checkpoint import convert_checkpoint, is_upstream_checkpoint
    ckpt = CheckpointLoader.load_checkpoint(checkpoint, map_location='cpu')
    if is_upstream_checkpoint(ckpt):
        ckpt = convert_checkpoint(ckpt)
    state_dict = ckpt.get('state_dict', ckpt)
    result = model.load_state_dict(state_dict, strict=False)
    return list(result.missing_keys)


class TensorMode(nn.Module):
    """``model(x, mode='tensor')`` as a plain ``forward(x)`` (for tracing/export).

    With ``backbone_only`` it runs ``model.backbone`` alone.
    """

    def __init__(self, model: nn.Module, backbone_only: bool = False):
        super().__init__()
        self.model = model
        self.backbone_only = backbone_only

    def forward(self, x: torch.Tensor):
        if self.backbone_only:
            return self.model.backbone(x)
        return self.model(x, mode='tensor')


def find_backbone(model: nn.Module) -> nn.Module:
    from ..models import EfficientMod
    backbone = getattr(model, 'backbone', model)
    if not isinstance(backbone, EfficientMod):
        raise TypeError(f'The model has no EfficientMod backbone (found '
                        f'{type(backbone).__name__}).')
    return backbone


def reference_backbone(backbone: nn.Module) -> ReferenceEfficientMod:
    """The plain baseline twin of an ``EfficientMod``, with the same weights."""
    ref = ReferenceEfficientMod(backbone.arch_settings, out_type=backbone.out_type,
                                out_indices=backbone.out_indices)
    ref.load_state_dict(backbone.state_dict(), strict=True)
    return ref.eval()


def with_backbone(model: nn.Module, backbone: nn.Module) -> nn.Module:
    """A copy of ``model`` whose backbone is ``backbone``."""
    if not hasattr(model, 'backbone'):
        return backbone
    old = model.backbone
    model.backbone = None
    new = copy.deepcopy(model)
    model.backbone = old
    new.backbone = backbone
    return new


def deploy_copy(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` with its backbone in the inference form."""
    new = copy.deepcopy(model).eval()
    find_backbone(new).switch_to_deploy()
    return new


def _flatten(outputs) -> List[torch.Tensor]:
    if isinstance(outputs, torch.Tensor):
        return [outputs]
    if isinstance(outputs, (list, tuple)):
        return [t for o in outputs for t in _flatten(o)]
    if isinstance(outputs, dict):
        return [t for k in sorted(outputs) for t in _flatten(outputs[k])]
    raise TypeError(f'Cannot flatten an output of type {type(outputs).__name__}.')


def flatten_outputs(outputs) -> List[torch.Tensor]:
    """The tensors of a (nested) model output, in a fixed order."""
    return _flatten(outputs)


def export_onnx(module: nn.Module, path: str, shape: Sequence[int],
                opset: int = 17, dynamic: bool = True) -> List[str]:
    """Export ``module`` (``forward(x)``, float32, CPU) to ONNX.

    The input is called ``input``; with ``dynamic`` its batch, height and width
    are dynamic, as are every output's batch and (for maps) spatial axes.
    Uses the TorchScript-based exporter (``dynamo=False``), which needs no
    extra package. Returns the output names.
    """
    module = module.eval()
    example = torch.randn(*shape)
    with torch.no_grad():
        outputs = flatten_outputs(module(example))
    names = [f'output{i}' for i in range(len(outputs))]
    axes = None
    if dynamic:
        axes = {'input': {0: 'batch', 2: 'height', 3: 'width'}}
        for i, (name, out) in enumerate(zip(names, outputs)):
            axes[name] = {0: 'batch'}
            if out.dim() == 4:
                axes[name].update({2: f'height{i}', 3: f'width{i}'})
    # Traced with autograd on, so that the blocks take their out-of-place
    # paths (the in-place ones are an eager inference optimisation).
    with torch.enable_grad():
        torch.onnx.export(module, (example, ), path, input_names=['input'],
                          output_names=names, dynamic_axes=axes,
                          opset_version=opset, dynamo=False)
    return names


def onnxruntime_session(path: str, threads: Optional[int] = None,
                        device: str = 'cpu'):
    import onnxruntime as ort
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    providers = ['CPUExecutionProvider']
    if torch.device(device).type == 'cuda':
        providers.insert(0, 'CUDAExecutionProvider')
    return ort.InferenceSession(path, options, providers=providers)


def compare_onnx(session, module: nn.Module,
                 shapes: Sequence[Sequence[int]], seed: int = 0
                 ) -> List[Tuple[Tuple[int, ...], float]]:
    """Max absolute difference between ONNX Runtime and PyTorch, per input shape."""
    gen = torch.Generator().manual_seed(seed)
    results = []
    for shape in shapes:
        x = torch.randn(*shape, generator=gen)
        with torch.no_grad():
            expected = flatten_outputs(module(x))
        got = session.run(None, {'input': x.numpy()})
        if len(got) != len(expected):
            raise RuntimeError(f'ONNX model gives {len(got)} outputs, PyTorch '
                               f'{len(expected)}.')
        diff = max((torch.from_numpy(g) - e).abs().max().item()
                   for g, e in zip(got, expected))
        results.append((tuple(shape), diff))
    return results
