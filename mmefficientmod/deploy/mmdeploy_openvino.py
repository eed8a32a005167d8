"""MMDeploy's OpenVINO backend on today's OpenVINO (the ``mmdeploy_openvino``
stack fix): mmdeploy 1.3.1 converts with the Model Optimizer and runs with
the Inference Engine API, both gone from OpenVINO >= 2024.0.
:func:`from_onnx` converts through ``openvino.convert_model`` and
:class:`OpenVINORuntimeWrapper` runs through ``openvino.Core``, with
mmdeploy's interfaces, so its ``tools/deploy.py`` and ``tools/test.py`` use
them unchanged. Both run in float32, so that the deployed model gives the
PyTorch model's results (OpenVINO would pick bfloat16 on CPUs that have it),
unless the model file asks for another precision under
:data:`PRECISION_RT_INFO` (``tools/deployment/openvino_precision.py`` writes
it for bfloat16 and int8 models).
"""
import os.path as osp
from typing import Dict, Optional, Sequence, Union

import numpy as np
import onnx
import torch
from mmdeploy.backend.base import BaseWrapper
from mmdeploy.backend.openvino.onnx2openvino import get_output_model_file
from mmdeploy.utils import get_root_logger
from mmdeploy.utils.timer import TimeCounter

# Compiled once per input shape; an unbounded number of shapes (a dataset of
# many image sizes) keeps only the most recent ones.
MAX_COMPILED_SHAPES = 8
# Where the IR names the precision its float operations run in ('f32' or
# 'bf16'): the model file carries it, so MMDeploy's tools need no option.
PRECISION_RT_INFO = ['mmefficientmod', 'inference_precision']


def float_precision(model) -> str:
    """What the float operations of the IR ``model`` run in: the precision
    it names under :data:`PRECISION_RT_INFO`, else 'f32'."""
    if model.has_rt_info(PRECISION_RT_INFO):
        return model.get_rt_info(PRECISION_RT_INFO).astype(str)
    return 'f32'


def from_onnx(onnx_model: Union[str, onnx.ModelProto],
              output_file_prefix: str,
              input_info: Dict[str, Sequence[int]],
              output_names: Sequence[str],
              mo_options=None) -> None:
    """Convert an ONNX model to OpenVINO IR (``.xml`` and ``.bin``) in the
    folder ``output_file_prefix``, the shapes of ``input_info`` fixed, float32
    weights; mmdeploy's ``from_onnx`` signature.

    ``mo_options`` (``backend_config.mo_options`` in a deploy config) were
    Model Optimizer command-line options; ``openvino.convert_model`` has no
    such options, so a deploy config that sets them is refused.
    """
    import openvino as ov
    if mo_options is not None and mo_options.get_options().strip():
        raise ValueError(
            'backend_config.mo_options in the deploy config asks for Model '
            f'Optimizer options ({mo_options.get_options().strip()!r}), but '
            'the Model Optimizer (mo) is gone from today\'s OpenVINO and '
            'openvino.convert_model has no such options. Remove mo_options '
            'from the deploy config (put normalisation in the model config\'s '
            'data_preprocessor instead).')
    if isinstance(onnx_model, str):
        onnx_path = onnx_model
    else:
        onnx_path = osp.join(output_file_prefix, 'end2end.onnx')
        onnx.save(onnx_model, onnx_path)
    model = ov.convert_model(
        onnx_path,
        input=[(name, list(shape)) for name, shape in input_info.items()],
        output=list(output_names))
    model_xml = get_output_model_file(onnx_path, output_file_prefix)
    # mo wrote float32 weights; save_model's default would halve them.
    ov.save_model(model, model_xml, compress_to_fp16=False)
    get_root_logger().info(
        f'Successfully exported OpenVINO model: {model_xml} '
        f'(openvino.convert_model, inputs {dict(input_info)})')


class OpenVINORuntimeWrapper(BaseWrapper):
    """An OpenVINO IR model behind mmdeploy's backend-wrapper interface, on
    the CPU, in float32 or the precision the IR names.

    Args:
        ir_model_file (str): The ``.xml`` file (its ``.bin`` beside it).
        output_names (Sequence[str], optional): The outputs to return; by
            default all of the model's.

    An input whose shape differs from the converted one reshapes the model
    and compiles it again for that shape (kept for the next input of that
    shape), as mmdeploy's own wrapper did.
    """

    def __init__(self,
                 ir_model_file: str,
                 output_names: Optional[Sequence[str]] = None,
                 **kwargs):
        import openvino as ov
        self._core = ov.Core()
        self._model = self._core.read_model(ir_model_file)
        self._compiled = {}
        self.precision = float_precision(self._model)
        if output_names is None:
            output_names = [out.get_any_name() for out in self._model.outputs]
        super().__init__(output_names)
        self.device = 'cpu'

    def _compiled_for(self, shapes: Dict[str, tuple]):
        import openvino as ov
        key = tuple(sorted(shapes.items()))
        if key not in self._compiled:
            model = self._model.clone()
            if any(not model.input(name).get_partial_shape().compatible(
                    ov.PartialShape(list(shape)))
                   for name, shape in shapes.items()):
                model.reshape({name: list(s) for name, s in shapes.items()})
            if len(self._compiled) >= MAX_COMPILED_SHAPES:
                self._compiled.pop(next(iter(self._compiled)))
            self._compiled[key] = self._core.compile_model(
                model, 'CPU', {'INFERENCE_PRECISION_HINT': self.precision})
        return self._compiled[key]

    def forward(self, inputs: Dict[str,
                                   torch.Tensor]) -> Dict[str, torch.Tensor]:
        """Run the model on ``inputs`` (name to tensor); return the outputs
        (name to tensor, on the CPU)."""
        arrays = {
            name: np.ascontiguousarray(tensor.detach().cpu().numpy())
            for name, tensor in inputs.items()
        }
        compiled = self._compiled_for({
            name: array.shape
            for name, array in arrays.items()
        })
        results = self.__openvino_execute(compiled, arrays)
        return {
            name: torch.from_numpy(np.asarray(results[name]))
            for name in self.output_names
        }

    # mmdeploy's stock wrapper holds the timer named 'openvino'.
    @TimeCounter.count_time('openvino.Core')
    def __openvino_execute(self, compiled, arrays):
        """One inference (timed by mmdeploy's ``--speed-test``)."""
        results = compiled(arrays)
        return {out.get_any_name(): value for out, value in results.items()}
