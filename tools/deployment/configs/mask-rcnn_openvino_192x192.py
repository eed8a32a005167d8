# OpenVINO, float32, converted for 1x3x192x192 inputs: what the embedded
# Mask R-CNN config's test pipeline gives (256x256 images resized to 192).
# Another input size is accepted: the model is reshaped and compiled again
# for it. See _base_/mask-rcnn.py for the outputs.
_base_ = ['./_base_/mask-rcnn.py']

backend_config = dict(
    type='openvino',
    model_inputs=[dict(opt_shapes=dict(input=[1, 3, 192, 192]))])
