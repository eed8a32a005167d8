# OpenVINO, float32, converted for 1x3x64x64 inputs: the embedded
# classifier's centre crop. See _base_/classifier.py for the output.
_base_ = ['./_base_/classifier.py']

backend_config = dict(
    type='openvino',
    model_inputs=[dict(opt_shapes=dict(input=[1, 3, 64, 64]))])
