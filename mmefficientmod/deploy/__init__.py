"""Deployment: the fastest CPU predictor per precision, and ONNX export."""
from .onnx import (compare_onnx, export_onnx, flatten_outputs,
                   onnxruntime_session)
from .precision import (DTYPES, autocast, cast_input, cosine_similarity,
                        cpu_has_bf16, default_precision_mode, to_precision,
                        top1_agreement)
from .predictor import PRECISIONS, CPUPredictor, cpu_predictor
from .prepare_model import deploy_copy, find_backbone, load_weights

__all__ = [
    'CPUPredictor', 'DTYPES', 'PRECISIONS', 'autocast', 'cast_input',
    'compare_onnx', 'cosine_similarity', 'cpu_has_bf16', 'cpu_predictor',
    'default_precision_mode', 'deploy_copy', 'export_onnx', 'find_backbone',
    'flatten_outputs', 'load_weights', 'onnxruntime_session', 'to_precision',
    'top1_agreement'
]
