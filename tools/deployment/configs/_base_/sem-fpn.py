# Semantic FPN as one ONNX graph: the image batch in, the class index of
# every pixel out (argmax inside the graph):
#   output (batch, 1, height, width), int64
# Batch, height and width are dynamic.
_base_ = ['./onnx.py']

image_axes = {0: 'batch', 2: 'height', 3: 'width'}
onnx_config = dict(
    output_names=['output'],
    dynamic_axes=dict(input=image_axes, output=image_axes))
codebase_config = dict(type='mmseg', task='Segmentation', with_argmax=True)
