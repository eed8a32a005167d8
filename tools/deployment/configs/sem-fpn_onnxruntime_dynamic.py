# ONNX Runtime, float32, dynamic batch and image size (see _base_/sem-fpn.py
# for the outputs).
_base_ = ['./_base_/sem-fpn.py']

backend_config = dict(type='onnxruntime')
