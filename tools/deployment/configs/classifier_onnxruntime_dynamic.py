# ONNX Runtime, float32, dynamic batch and image size (see _base_/classifier.py
# for the outputs).
_base_ = ['./_base_/classifier.py']

backend_config = dict(type='onnxruntime')
