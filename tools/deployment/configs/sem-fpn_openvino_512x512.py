# OpenVINO, converted for 1x3x512x512 inputs: what ADE20K's test pipeline
# (2048x512, keep ratio) makes of the embedded 256x256 images. float32 as
# written by tools/deploy.py; tools/deployment/openvino_precision.py turns it
# into bfloat16 or int8.
_base_ = ['./_base_/sem-fpn.py']

backend_config = dict(
    type='openvino',
    model_inputs=[dict(opt_shapes=dict(input=[1, 3, 512, 512]))])
