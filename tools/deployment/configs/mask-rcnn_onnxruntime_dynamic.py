# ONNX Runtime, float32, dynamic batch and image size (see _base_/mask-rcnn.py
# for the outputs).
_base_ = ['./_base_/mask-rcnn.py']

backend_config = dict(type='onnxruntime')
