"""Deployment: the fastest CPU predictor per precision, and ONNX export."""
from .onnx import export_onnx, flatten_outputs, onnxruntime_session
from .precision import cosine_similarity, cpu_has_bf16, top1_agreement
from .predictor import PRECISIONS, CPUPredictor, cpu_predictor
from .prepare_model import deploy_copy, find_backbone, load_weights

__all__ = [
    'CPUPredictor', 'PRECISIONS', 'cosine_similarity', 'cpu_has_bf16',
    'cpu_predictor', 'deploy_copy', 'export_onnx', 'find_backbone',
    'flatten_outputs', 'load_weights', 'onnxruntime_session', 'top1_agreement'
]
