# Semantic FPN as one ONNX graph: the image batch in, the class index of
# every pixel out (argmax inside the graph):
#   output (batch, 1, height, width), int64
# Batch, height and width are dynamic.
_base_ = ['./onnx.py']

onnx_config = dict(
    output_names=['output'],
    dynamic_axes=dict(
        input={
            0: 'batch',
            2: 'height',
            3: 'width'
        },
        output={
            0: 'batch',
            2: 'height',
            3: 'width'
        }))
codebase_config = dict(type='mmseg', task='Segmentation', with_argmax=True)
