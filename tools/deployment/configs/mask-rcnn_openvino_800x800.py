# OpenVINO, converted for 1x3x800x800 inputs: what COCO's test pipeline
# (1333x800, keep ratio) makes of the embedded 256x256 images. Other sizes
# are reshaped and compiled again. float32 as written by tools/deploy.py;
# tools/deployment/openvino_precision.py turns it into bfloat16 or int8.
_base_ = ['./_base_/mask-rcnn.py']

backend_config = dict(
    type='openvino',
    model_inputs=[dict(opt_shapes=dict(input=[1, 3, 800, 800]))])
