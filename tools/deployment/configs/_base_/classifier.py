# The ImageNet-layout classifier as one ONNX graph: the image batch in, the
# class scores (softmax of the head's logits) out:
#   output (batch, num_classes)
# Batch, height and width are dynamic (the backbone pools globally).
_base_ = ['./onnx.py']

image_axes = {0: 'batch', 2: 'height', 3: 'width'}
onnx_config = dict(
    output_names=['output'],
    dynamic_axes=dict(input=image_axes, output={0: 'batch'}))
codebase_config = dict(type='mmpretrain', task='Classification')
