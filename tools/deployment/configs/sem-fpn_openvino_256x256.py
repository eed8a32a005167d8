# OpenVINO, float32, converted for 1x3x256x256 inputs: what the embedded
# Semantic FPN configs' test pipelines give (256x256 images). Another input
# size is accepted: the model is reshaped and compiled again for it. See
# _base_/sem-fpn.py for the output.
_base_ = ['./_base_/sem-fpn.py']

backend_config = dict(
    type='openvino',
    model_inputs=[dict(opt_shapes=dict(input=[1, 3, 256, 256]))])
