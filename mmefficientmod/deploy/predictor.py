"""The fastest CPU inference callable of a built model, per precision.

:func:`cpu_predictor` turns a built classifier (logits) or backbone
(features) into a callable that takes a float32 NCHW batch (already
normalised, as the model's ``data_preprocessor`` leaves it) and returns
float32 outputs. Every engine runs the deploy (folded) form of the model.

=========  ===============================================================
precision  engines (``'auto'`` picks the first that applies)
=========  ===============================================================
``fp32``   ``openvino``, ``onnxruntime``, ``torch``, ``inductor``
``bf16``   ``openvino``, ``torch``, ``inductor`` (a CPU with AVX512-BF16
           or AMX)
``int8``   ``openvino`` (static: NNCF post-training quantisation calibrated
           on ``calibration_data``), ``onnxruntime`` (dynamic: int8
           matrix-multiply weights, activations quantised per call, no
           calibration), ``onnxruntime-static`` (QDQ, calibrated)
=========  ===============================================================

The rule of ``'auto'``: OpenVINO whenever it is installed (for int8: with
NNCF, and when calibration data is given), else ONNX Runtime for fp32 and
int8 and PyTorch for bf16. The predictor records what ran (``engine``,
``precision`` and OpenVINO's compiled settings, ``engine_settings``). Why
these engines and settings, as measured: docs/speed.md.
"""
import copy
import os.path as osp
import tempfile
import threading
from typing import Callable, Iterable, Optional, Sequence

import torch
import torch.nn as nn

from ..arch import is_int
from ..models.from_config import TensorMode
from .onnx import export_onnx, flatten_outputs, onnxruntime_session
from .openvino import (compile_for_cpu, compiled_settings, convert_module,
                       openvino_available, openvino_runner, quantize_int8)
from .precision import cpu_has_bf16, cpu_has_vnni
from .prepare_model import find_backbone

PRECISIONS = ('fp32', 'bf16', 'int8')
ENGINES = {
    'fp32': ('openvino', 'onnxruntime', 'torch', 'inductor'),
    'bf16': ('openvino', 'torch', 'inductor'),
    'int8': ('openvino', 'onnxruntime', 'onnxruntime-static'),
}
# 'auto' without OpenVINO (or, for int8, without NNCF or calibration data).
FALLBACK_ENGINE = {
    'fp32': 'onnxruntime',
    'bf16': 'torch',
    'int8': 'onnxruntime'
}
# Engines that quantise with calibrated activation ranges.
CALIBRATED = ('openvino', 'onnxruntime-static')
# Normalised calibration inputs stay within this magnitude (ImageNet's mean
# and std map 0-255 pixels to -2.2 .. 2.7); larger ones look like raw pixels.
MAX_NORMALISED = 20.0


def auto_engine(precision: str, calibrated: bool) -> str:
    """The engine ``'auto'`` picks (the rule of the module docstring).

    Args:
        precision (str): One of :data:`PRECISIONS`.
        calibrated (bool): Whether calibration data is given.
    """
    int8 = precision == 'int8'
    if openvino_available(int8) and (calibrated or not int8):
        return 'openvino'
    return FALLBACK_ENGINE[precision]


class CPUPredictor:
    """A float32-in, float32-out inference callable (see :func:`cpu_predictor`).

    Attributes:
        precision (str): ``'fp32'``, ``'bf16'`` or ``'int8'``.
        engine (str): What runs it: ``'openvino'``, ``'onnxruntime'``,
            ``'onnxruntime-static'``, ``'torch'`` or ``'inductor'``.
        engine_settings (dict): For OpenVINO, the compiled model's
            precision hint, performance hint, threads and streams, as read
            back from it; empty for the others.
        compiled_model (openvino.CompiledModel | None): What OpenVINO runs.
        single_output (bool): Whether a call returns one tensor (a
            classifier's logits) rather than a tuple (a backbone's features).
        onnx_path (str | None): The ONNX file an ONNX Runtime engine runs,
            when it was written to a ``workdir``; else None.

    Calls from several threads take turns (one lock per predictor). int8
    gives nan outputs for an image with a nan or inf pixel, as float32 does.
    """

    def __init__(self,
                 run: Callable,
                 precision: str,
                 engine: str,
                 single_output: bool,
                 in_channels: int,
                 onnx_path: Optional[str] = None,
                 compiled_model=None):
        self._run = run
        self._lock = threading.Lock()
        self.precision = precision
        self.engine = engine
        self.single_output = single_output
        self.in_channels = in_channels
        self.onnx_path = onnx_path
        self.compiled_model = compiled_model
        self.engine_settings = ({} if compiled_model is None else
                                compiled_settings(compiled_model))

    def __call__(self, x: torch.Tensor):
        if (not isinstance(x, torch.Tensor) or x.dim() != 4
                or x.shape[1] != self.in_channels or x.dtype != torch.float32):
            got = (f'{x.dtype} tensor of shape {tuple(x.shape)}' if isinstance(
                x, torch.Tensor) else type(x).__name__)
            raise ValueError(
                f'The predictor takes a float32 N x {self.in_channels} x H x W '
                f'tensor (normalised as by the data preprocessor); got a '
                f'{got}. Convert it with x.float() / x.unsqueeze(0).')
        bad = (~torch.isfinite(x).flatten(1).all(1)
               if self.precision == 'int8' else None)
        if bad is not None and bad.any():
            # int8 would turn nan/inf into finite values (and, quantised per
            # batch, spoil the others): run the finite images, nan the rest.
            keep, outs = ~bad, []
            good = x[keep] if keep.any() else torch.zeros_like(x[:1])
            for part in self._infer(good):
                out = part.new_full((len(x), ) + part.shape[1:], float('nan'))
                out[keep] = part[:int(keep.sum())]
                outs.append(out)
        else:
            outs = self._infer(x)
        return outs[0] if self.single_output else tuple(outs)

    def _infer(self, x: torch.Tensor) -> list:
        with self._lock:
            return [o.float() for o in self._run(x.contiguous())]

    def __repr__(self):
        return (f'CPUPredictor(precision={self.precision!r}, '
                f'engine={self.engine!r}, '
                f'engine_settings={self.engine_settings!r})')


def _inference_module(model: nn.Module) -> nn.Module:
    """The deploy form of ``model`` as ``forward(x)``, float32, CPU."""
    folded = copy.deepcopy(model).cpu().float().eval()
    find_backbone(folded).switch_to_deploy()
    if hasattr(folded, 'backbone'):
        return TensorMode(folded)
    return folded


def _torch_engine(module: nn.Module, dtype: torch.dtype) -> Callable:
    module = module.to(dtype)

    def run(x):
        with torch.inference_mode():
            return flatten_outputs(module(x.to(dtype)))

    return run


def _inductor_engine(module: nn.Module, dtype: torch.dtype) -> Callable:
    module = module.to(dtype)
    # Freezing folds the weights into the graph as constants, so that
    # oneDNN can pre-pack them once instead of at every call.
    compiled = torch.compile(module, dynamic=False, options={'freezing': True})

    def run(x):
        with torch.no_grad():
            return flatten_outputs(compiled(x.to(dtype)))

    return run


def _ort_engine(path: str, threads: Optional[int]) -> Callable:
    session = onnxruntime_session(path, threads)

    def run(x):
        return [
            torch.from_numpy(o)
            for o in session.run(None, {'input': x.numpy()})
        ]

    return run


def _check_calibration_batch(batch, index: int, channels: int) -> None:
    if not isinstance(batch, torch.Tensor) or batch.dim() != 4:
        what = (f'is a {batch.dim()}-D tensor' if isinstance(
            batch, torch.Tensor) else f'is a {type(batch).__name__}')
        what += f' with keys {sorted(batch)}' if isinstance(batch,
                                                            dict) else ''
    elif not batch.is_floating_point():
        what = f'is {batch.dtype}: raw pixels'
    elif batch.shape[1] != channels:
        what = f'has {batch.shape[1]} channels; the model takes {channels}'
    elif not torch.isfinite(batch).all():
        what = 'holds nan or inf values'
    elif batch.abs().max() > MAX_NORMALISED:
        what = (f'reaches {batch.abs().max().item():g}: raw 0-255 pixels, '
                f'not normalised inputs (within +-{MAX_NORMALISED:g})')
    else:
        return
    raise ValueError(
        f'Calibration batch {index} {what}. Pass float N x C x H x W tensors '
        "normalised as the model's data_preprocessor leaves them (mean "
        'subtracted, divided by std), or the batches of an OpenMMLab '
        'dataloader (dicts with `inputs`) for a model with a '
        'data_preprocessor.')


def calibration_inputs(data: Iterable, model: nn.Module,
                       max_batches: int) -> list:
    """Float32 NCHW input batches for int8 calibration.

    Args:
        data (Iterable): Float tensors (already normalised), or the batches
            of an OpenMMLab dataloader (dicts with ``inputs``), which the
            model's ``data_preprocessor`` turns into tensors.
        model (nn.Module): The model whose preprocessor applies.
        max_batches (int): Stop after this many batches.

    A batch that is not float, finite, normalised (within
    +-:data:`MAX_NORMALISED`) and of the model's channel count is a
    ValueError naming it.
    """
    batches = []
    channels = find_backbone(model).in_channels
    for index, batch in enumerate(data):
        if len(batches) >= max_batches:
            break
        preprocessor = getattr(model, 'data_preprocessor', None)
        if isinstance(batch, dict) and 'inputs' in batch and preprocessor:
            with torch.no_grad():
                batch = preprocessor(batch, False)['inputs']
        _check_calibration_batch(batch, index, channels)
        batches.append(batch.float().cpu())
    if not batches:
        raise ValueError('The calibration data yielded no batch.')
    return batches


def _quantize_int8_dynamic(fp32_path: str, out_path: str) -> None:
    """int8 weights (per output channel) for the MatMul/Gemm nodes; their
    activations are quantised at run time, per tensor."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared = out_path + '.prep.onnx'
    quant_pre_process(fp32_path, prepared, skip_symbolic_shape=True)
    # Signed weights: unsigned ones measured 1.4x slower at batch 1.
    # Per-channel scales cost no time and brought the logits' cosine with
    # float32 from 0.9995 to 0.9999 (s). Without VNNI the CPU sums int8
    # products in pairs into saturating 16-bit integers: 7-bit weights
    # (reduce_range) took xxs's cosine there from 0.95 to 0.9994.
    quantize_dynamic(
        prepared,
        out_path,
        per_channel=True,
        reduce_range=not cpu_has_vnni(),
        weight_type=QuantType.QInt8,
        op_types_to_quantize=['MatMul', 'Gemm'])


def _quantize_int8_static(fp32_path: str, out_path: str,
                          batches: list) -> None:
    from onnxruntime.quantization import (CalibrationDataReader,
                                          CalibrationMethod, QuantFormat,
                                          QuantType, quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):

        def __init__(self):
            self.items = iter(batches)

        def get_next(self):
            batch = next(self.items, None)
            return None if batch is None else {'input': batch.numpy()}

    prepared = out_path + '.prep.onnx'
    quant_pre_process(fp32_path, prepared, skip_symbolic_shape=True)
    quantize_static(
        prepared,
        out_path,
        Reader(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.MinMax,
        op_types_to_quantize=['Conv', 'MatMul', 'Gemm'])


def cpu_predictor(model: nn.Module,
                  precision: str = 'fp32',
                  engine: str = 'auto',
                  calibration_data: Optional[Iterable] = None,
                  num_calibration_batches: int = 8,
                  threads: Optional[int] = None,
                  example_shape: Sequence[int] = (1, 3, 224, 224),
                  workdir: Optional[str] = None,
                  cache_dir: Optional[str] = None) -> CPUPredictor:
    """The fastest CPU callable of ``model`` at ``precision``.

    Args:
        model (nn.Module): A built classifier (mmpretrain ``ImageClassifier``
            with an EfficientMod backbone: the callable returns logits) or an
            :class:`~mmefficientmod.models.EfficientMod` backbone (it returns
            the backbone's tuple of features). Float32 and not switched to
            deploy; it is left unchanged.
        precision (str): ``'fp32'``, ``'bf16'`` (needs a CPU with bfloat16
            arithmetic: AVX512-BF16 or AMX) or ``'int8'``.
        engine (str): ``'auto'`` (the rule of the module docstring), or one
            of ``'openvino'``, ``'onnxruntime'``, ``'torch'``,
            ``'inductor'`` (slow first call: it compiles) where the
            precision allows, ``'onnxruntime-static'`` (int8 only).
        calibration_data (Iterable, optional): Required by the calibrated
            int8 engines (``'openvino'``, ``'onnxruntime-static'``):
            normalised float32 NCHW batches, or an OpenMMLab dataloader's
            batches (the model's data preprocessor normalises them).
        num_calibration_batches (int): Batches of ``calibration_data`` used.
            Defaults to 8.
        threads (int, optional): OpenVINO's or ONNX Runtime's threads
            (PyTorch's: ``torch.get_num_threads()``). Defaults to one per
            physical core.
        example_shape (Sequence[int]): The example input of the export or
            conversion; the graph takes any batch and image size.
        workdir (str, optional): Where ONNX Runtime's ONNX files stay
            (``model_fp32.onnx``, ``model_int8.onnx``); by default a
            temporary folder, removed once the engine is built.
        cache_dir (str, optional): OpenVINO's model cache, checked before
            it is used: a later build loads the compiled form from there.

    Returns:
        CPUPredictor: ``predictor(x)`` with ``x`` a float32 N x C x H x W
        tensor returns float32 logits, or a tuple of float32 feature maps.
    """
    every_engine = sorted({e for names in ENGINES.values() for e in names})
    for ok, name, expected, value in [
        (isinstance(model, nn.Module), 'model', 'a built model (an '
         'ImageClassifier with an EfficientMod backbone, or an EfficientMod)',
         type(model).__name__),
        (precision
         in PRECISIONS, 'precision', f'one of {PRECISIONS}', precision),
        (engine == 'auto' or engine in every_engine, 'engine',
         f"'auto' or one of {every_engine}", engine),
        (threads is None or is_int(threads) and threads >= 1, 'threads',
         'None or an integer >= 1', threads),
        (is_int(num_calibration_batches)
         and num_calibration_batches >= 1, 'num_calibration_batches',
         'an integer >= 1', num_calibration_batches),
        (isinstance(example_shape, Sequence) and len(example_shape) == 4
         and all(is_int(s) and s >= 1 for s in example_shape), 'example_shape',
         '4 positive integers (N, C, H, W)', example_shape),
        (calibration_data is None or isinstance(calibration_data, Iterable),
         'calibration_data', 'None or an iterable of batches (tensors or a '
         'dataloader)', type(calibration_data).__name__),
        (workdir is None or isinstance(workdir, str) and
         (osp.isdir(workdir) or not osp.exists(workdir)), 'workdir',
         'None or a directory path', workdir),
    ]:
        if not ok:
            raise ValueError(
                f'cpu_predictor: {name} must be {expected}; got {value!r}.')
    if engine == 'auto':
        engine = auto_engine(precision, calibration_data is not None)
    if engine not in ENGINES[precision]:
        raise NotImplementedError(
            f'The {engine!r} engine cannot serve {precision!r}; for '
            f'{precision!r} use one of {ENGINES[precision]} (or \'auto\').')
    if precision == 'bf16':
        if not cpu_has_bf16():
            raise NotImplementedError(
                'This CPU has no bfloat16 arithmetic (AVX512-BF16 or AMX); '
                "bf16 would be emulated and slower than float32. Use 'fp32' "
                "or 'int8'.")
    if (precision == 'int8' and engine in CALIBRATED
            and calibration_data is None):
        raise ValueError(
            f'Static int8 ({engine!r}) needs calibration_data: an iterable '
            'of normalised float32 NCHW batches, or a dataloader (e.g. the '
            "config's train or val dataloader) whose batches the model's "
            "data_preprocessor turns into inputs (or engine='onnxruntime', "
            'dynamic int8, which needs none).')
    backbone = find_backbone(model)
    single = hasattr(model, 'backbone')
    in_channels = backbone.in_channels
    module = _inference_module(model)
    if engine == 'torch':
        run = _torch_engine(
            module, torch.bfloat16 if precision == 'bf16' else torch.float32)
        return CPUPredictor(run, precision, engine, single, in_channels)
    if engine == 'inductor':
        run = _inductor_engine(
            module, torch.bfloat16 if precision == 'bf16' else torch.float32)
        return CPUPredictor(run, precision, engine, single, in_channels)
    batches = None
    if precision == 'int8' and engine in CALIBRATED:
        batches = calibration_inputs(calibration_data, model,
                                     num_calibration_batches)
    if engine == 'openvino':
        ov_model = convert_module(module, example_shape)
        if precision == 'int8':
            ov_model = quantize_int8(ov_model, batches)
        compiled = compile_for_cpu(ov_model, precision, threads, cache_dir)
        return CPUPredictor(
            openvino_runner(compiled),
            precision,
            engine,
            single,
            in_channels,
            compiled_model=compiled)
    with tempfile.TemporaryDirectory(prefix='cpu_predictor_') as tmp:
        folder = workdir or tmp
        path = osp.join(folder, 'model_fp32.onnx')
        export_onnx(module, path, example_shape)
        if precision == 'int8':
            fp32_path, path = path, osp.join(folder, 'model_int8.onnx')
            if engine == 'onnxruntime-static':
                _quantize_int8_static(fp32_path, path, batches)
            else:
                _quantize_int8_dynamic(fp32_path, path)
        run = _ort_engine(path, threads)
    # The engine holds the model in memory; a temporary folder is gone.
    return CPUPredictor(run, precision, engine, single, in_channels,
                        path if workdir else None)
