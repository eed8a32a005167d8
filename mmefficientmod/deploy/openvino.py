"""OpenVINO for the CPU: the deploy-form module converted to an OpenVINO
model, compiled at a stated precision, and its int8 form by post-training
static quantisation (NNCF).

The module itself is converted (``openvino.convert_model``; a leaner graph
than its ONNX export's). The precision hint is always set and read back:
without it OpenVINO runs float32 models in bfloat16 on CPUs with native
bfloat16. int8 is ``nncf.quantize`` calibrated on representative inputs;
the residual adds, layer norms and softmax stay in float32.
"""
import glob
import hashlib
import os
import warnings
from collections import Counter
from typing import Callable, Dict, List, Optional, Sequence, Union

import torch

from .precision import cpu_has_vnni

# An int8 model keeps its int8 ops whatever the hint; float32 for the rest:
# bfloat16 on top lowered the logits' agreement without a measured gain.
INFERENCE_PRECISION = {'fp32': 'f32', 'bf16': 'bf16', 'int8': 'f32'}
# The settings read back after compiling, recorded by the predictor.
REPORTED_PROPERTIES = ('INFERENCE_PRECISION_HINT', 'PERFORMANCE_HINT',
                       'INFERENCE_NUM_THREADS', 'NUM_STREAMS')


def openvino_available(int8: bool = False) -> bool:
    """Whether ``openvino`` (and, for ``int8``, ``nncf``) can be imported."""
    import importlib.util
    names = ('openvino', 'nncf') if int8 else ('openvino', )
    return all(importlib.util.find_spec(n) is not None for n in names)


def _openvino():
    try:
        import openvino
    except ImportError as err:
        raise ImportError(
            "The 'openvino' engine needs OpenVINO: pip install openvino "
            '(tools/install.sh installs it).') from err
    return openvino


def convert_module(module: torch.nn.Module, example_shape: Sequence[int]):
    """The OpenVINO model of ``module`` (float32, CPU, eval), traced on a
    zero tensor of ``example_shape``; its input takes any batch and image
    size."""
    ov = _openvino()
    with torch.no_grad():
        model = ov.convert_model(
            module, example_input=torch.zeros(*example_shape))
    channels = example_shape[1]
    model.reshape({0: ov.PartialShape([-1, channels, -1, -1])})
    return model


def quantize_int8(model,
                  batches: List[torch.Tensor],
                  ignored_types: Sequence[str] = ('Add', 'MVN'),
                  ignored_patterns: Sequence[str] = ()):
    """int8 OpenVINO model by NNCF's post-training static quantisation.

    Args:
        model (openvino.Model): The float32 model.
        batches (list[Tensor]): Normalised float32 NCHW inputs whose
            activation ranges are calibrated (every image is used).
        ignored_types (Sequence[str]): Operation types left float; the
            default suits the backbone (below).
        ignored_patterns (Sequence[str]): Regular expressions of operation
            names left float.
    """
    try:
        import nncf
    except ImportError as err:
        raise ImportError("OpenVINO's int8 comes from NNCF: pip install nncf "
                          '(tools/install.sh installs it).') from err
    from nncf.quantization.advanced_parameters import (
        AdvancedQuantizationParameters, OverflowFix, QuantizationParameters)
    dataset = nncf.Dataset([b.numpy() for b in batches])
    # Without VNNI the CPU sums int8 products in pairs into saturating 16-bit
    # integers; NNCF then keeps the weights of every layer (by default only
    # the first) to 7 bits. On an AMD EPYC without VNNI this raised xxs's
    # logits cosine with float32 from 0.9979 to 0.9991.
    overflow_fix = OverflowFix.FIRST_LAYER if cpu_has_vnni() \
        else OverflowFix.ENABLE
    # Activations get one scale per tensor. NNCF takes axis 1 of a 4-D
    # activation as its channels, but inside a stage the model is
    # channels-last (N, H, W, C): per-"channel" ranges were per image row,
    # and the quantised model then failed on any other image height.
    per_tensor = AdvancedQuantizationParameters(
        overflow_fix=overflow_fix,
        activations_quantization_params=QuantizationParameters(
            per_channel=False))
    # NNCF's default (CNN) recipe, with no quantiser on the inputs of the
    # residual adds and layer norms: the residual stream is what int8 hurt
    # most (NNCF's accuracy-controlled search reverted exactly those). With
    # them in float32 the logits' cosine with float32 rose from 0.9933-0.9961
    # to 0.9995 (xxs, s; unseen weights, random calibration) with every
    # convolution and matrix multiply still int8. The transformer recipe
    # (SmoothQuant, int8 attention products) gave 0.984.
    return nncf.quantize(
        model,
        dataset,
        subset_size=len(batches),
        ignored_scope=nncf.IgnoredScope(
            types=list(ignored_types),
            patterns=list(ignored_patterns),
            validate=False),
        advanced_parameters=per_tensor)


def compile_for_cpu(model: Union[str, object],
                    precision: str,
                    threads: Optional[int] = None,
                    cache_dir: Optional[str] = None,
                    hint: str = 'LATENCY'):
    """Compile ``model`` for the CPU at ``precision`` and check what ran.

    Args:
        model (str | openvino.Model): A model file or an OpenVINO model.
        precision (str): ``'fp32'``, ``'bf16'`` or ``'int8'`` (an
            int8-quantised model, whose remaining ops run in float32).
        threads (int, optional): ``INFERENCE_NUM_THREADS``; OpenVINO's
            choice (one per physical core) when None.
        cache_dir (str, optional): OpenVINO's model cache (``CACHE_DIR``): a
            later compile of the same model with the same settings loads
            the compiled form from there, once :func:`check_cache` found it
            intact.
        hint (str): ``PERFORMANCE_HINT``: ``'LATENCY'`` (one stream, every
            thread on each request) or ``'THROUGHPUT'``.

    Returns:
        openvino.CompiledModel
    """
    wanted = INFERENCE_PRECISION[precision]
    config = {'PERFORMANCE_HINT': hint, 'INFERENCE_PRECISION_HINT': wanted}
    if threads:
        config['INFERENCE_NUM_THREADS'] = threads
    if cache_dir:
        config['CACHE_DIR'] = cache_dir
        check_cache(cache_dir)
    compiled = _openvino().Core().compile_model(model, 'CPU', config)
    if cache_dir:
        check_cache(cache_dir, record=True)
    got = _as_text(compiled.get_property('INFERENCE_PRECISION_HINT'))
    if got != wanted:
        raise RuntimeError(
            f'OpenVINO compiled the model for {got!r} arithmetic where '
            f'{wanted!r} was asked for ({precision}); this CPU or OpenVINO '
            'version does not offer it. Choose another precision.')
    return compiled


def check_cache(cache_dir: str, record: bool = False) -> None:
    """OpenVINO loads a cached ``*.blob`` unchecked (only a truncated one
    is noticed): delete, with a warning, each whose SHA-256 is not the one
    stored beside it (``BLOB.sha256``), so that it is compiled again;
    ``record`` stores the checksums of blobs that have none."""
    for blob in glob.glob(os.path.join(cache_dir, '*.blob')):
        with open(blob, 'rb') as f:
            digest = hashlib.sha256(f.read()).hexdigest()
        stored, known = blob + '.sha256', None
        if os.path.exists(stored):
            with open(stored) as f:
                known = f.read().strip()
        if record and known is None:
            with open(stored, 'w') as f:
                f.write(digest)
        elif not record and known != digest:
            warnings.warn(f'OpenVINO cache: {blob} does not match its '
                          'checksum; compiling the model again.')
            os.remove(blob)
            if known is not None:
                os.remove(stored)


def _as_text(value) -> str:
    """An OpenVINO property value as text: ``'bf16'``, ``'LATENCY'``, ``'2'``."""
    if hasattr(value, 'get_type_name'):  # an element type
        return value.get_type_name()
    return getattr(value, 'name', str(value))  # an enum, or a number


def compiled_settings(compiled) -> Dict[str, str]:
    """The settings of a compiled model, read back from it."""
    return {
        name: _as_text(compiled.get_property(name))
        for name in REPORTED_PROPERTIES
    }


# The CPU plugin's names of the ops that carry the arithmetic.
COMPUTE_OPS = ('Convolution', 'FullyConnected', 'MatMul')


def runtime_precisions(compiled, op_types=COMPUTE_OPS) -> Counter:
    """How many of the executed ``op_types`` ran in each precision.

    Read from the compiled model's execution graph (its ``layerType`` and
    ``runtimePrecision``), i.e. what the CPU plugin runs, after its fusions.
    """
    counts = Counter()
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        if info['layerType'].astype(str) in op_types:
            counts[info['runtimePrecision'].astype(str)] += 1
    return counts


def openvino_runner(compiled) -> Callable:
    """``run(x)``: the compiled model's outputs for a float32 tensor."""
    request = compiled.create_infer_request()

    def run(x):
        request.infer({0: x.numpy()})
        # Copies: the request's buffers are reused by its next call.
        return [
            torch.from_numpy(request.get_output_tensor(i).data.copy())
            for i in range(len(compiled.outputs))
        ]

    return run
