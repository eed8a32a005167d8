# The ONNX graph every deploy config here starts from: mmdeploy exports it
# with torch's TorchScript exporter (mmdeploy's rewriters need it), opset 11
# as in mmdeploy's own configs, weights inside the file.
onnx_config = dict(
    type='onnx',
    export_params=True,
    keep_initializers_as_inputs=False,
    opset_version=11,
    save_file='end2end.onnx',
    input_names=['input'],
    input_shape=None,  # the shape of the image given to tools/deploy.py
    optimize=True)
