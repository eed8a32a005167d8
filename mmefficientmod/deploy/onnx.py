"""ONNX export of EfficientMod models and ONNX Runtime sessions."""
import warnings
from typing import List, Optional, Sequence

import torch
import torch.nn as nn


def flatten_outputs(outputs) -> List[torch.Tensor]:
    """The tensors of a (nested) model output, in a fixed order."""
    if isinstance(outputs, torch.Tensor):
        return [outputs]
    if isinstance(outputs, (list, tuple)):
        return [t for o in outputs for t in flatten_outputs(o)]
    if isinstance(outputs, dict):
        return [
            t for k in sorted(outputs) for t in flatten_outputs(outputs[k])
        ]
    raise TypeError(
        f'Cannot flatten a model output of type {type(outputs).__name__}; '
        'expected tensors in (nested) tuples, lists or dicts.')


def export_onnx(module: nn.Module,
                path: str,
                shape: Sequence[int],
                opset: int = 17,
                dynamic: bool = True,
                constant_folding: bool = True) -> List[str]:
    """Export ``module`` (``forward(x)``, float32, CPU) to ONNX.

    Args:
        module (nn.Module): Called as ``module(x)``.
        path (str): The ``.onnx`` file to write.
        shape (Sequence[int]): Example input shape (N, C, H, W).
        opset (int): ONNX opset. Defaults to 17.
        dynamic (bool): Make the batch, height and width of the input
            ``input`` dynamic, and every output's batch and map size.
            Defaults to True.
        constant_folding (bool): Fold constant subgraphs at export.
            Defaults to True.

    Returns:
        list[str]: The output names, ``output0``, ``output1``, ...

    Uses the TorchScript-based exporter (``dynamo=False``), which needs no
    package beyond ``onnx``.
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
    with warnings.catch_warnings():
        # The backbone's input check (4 dimensions, its channel count) reads
        # the input's shape, which the tracer warns about; the channel count
        # is fixed in the exported graph anyway.
        warnings.filterwarnings(
            'ignore',
            category=torch.jit.TracerWarning,
            module=r'mmefficientmod\.models\.backbones\.efficientmod')
        torch.onnx.export(
            module, (example, ),
            path,
            input_names=['input'],
            output_names=names,
            dynamic_axes=axes,
            opset_version=opset,
            do_constant_folding=constant_folding,
            dynamo=False)
    return names


def onnxruntime_session(path: str,
                        threads: Optional[int] = None,
                        device: str = 'cpu',
                        spinning: bool = False):
    """An ONNX Runtime session with every graph optimisation on.

    Args:
        path (str): The ``.onnx`` file (or its bytes).
        threads (int, optional): Intra-op threads; None lets ONNX Runtime
            choose (one per physical core).
        device (str): ``'cpu'`` or ``'cuda[:i]'``.
        spinning (bool): Let the intra-op threads busy-wait after a run.
            That saves a little latency when the session runs back to back,
            but the spinning threads take the cores from whatever runs next
            in the process (another model timed in turns, the rest of a
            pipeline), so it is off by default.
    """
    import onnxruntime as ort
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    options.graph_optimization_level = (
        ort.GraphOptimizationLevel.ORT_ENABLE_ALL)
    options.add_session_config_entry('session.intra_op.allow_spinning',
                                     '1' if spinning else '0')
    options.add_session_config_entry('session.inter_op.allow_spinning',
                                     '1' if spinning else '0')
    providers = ['CPUExecutionProvider']
    if torch.device(device).type == 'cuda':
        providers.insert(0, 'CUDAExecutionProvider')
    return ort.InferenceSession(path, options, providers=providers)
