"""Turn the float32 OpenVINO model that MMDeploy's ``tools/deploy.py`` wrote
into a bfloat16 or an int8 one, which MMDeploy's ``tools/test.py`` then
evaluates like any other (what each option does: docs/deployment.md)::

    python tools/deployment/openvino_precision.py DEPLOY_CONFIG MODEL_CONFIG \\
        WORK_DIR/end2end.xml OUT_DIR --precision int8 [--calib-images 64]
"""
import argparse
import copy
import logging
import os
import os.path as osp
import shutil

# MMDeploy's export names each operation after the module it runs in
# ('/backbone/stages.2/...', '/rpn_head/rpn_conv/...'); post-processing it
# adds itself sits at the top level ('/Exp', '/NonMaxSuppression_1').
TOP_LEVEL = r'^/[^/]*$'
ROI_EXTRACTORS = r'.*roi_extractor.*'
HEADS = r'^/(rpn_head|bbox_head|mask_head|decode_head|head)/.*'
KEEP_FLOAT = {
    'postprocess': [TOP_LEVEL, ROI_EXTRACTORS],
    'heads': [TOP_LEVEL, ROI_EXTRACTORS, HEADS],
    'nothing': [],
}
SDK_FILES = ('deploy.json', 'pipeline.json', 'detail.json')


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    add = parser.add_argument
    add('deploy_config')
    add('model_config')
    add('model', help='the .xml that tools/deploy.py wrote')
    add('out_dir')
    add('--precision', choices=['bf16', 'int8'], required=True)
    add('--float-precision',
        choices=['f32', 'bf16'],
        default='f32',
        help='what the operations left float run in (int8 only)')
    add('--calib-images', type=int, default=64, help='to calibrate int8')
    add('--keep-float',
        choices=list(KEEP_FLOAT),
        default='postprocess',
        help='what int8 leaves float (docs/deployment.md)')
    return parser.parse_args()


def calibration_inputs(deploy_config, model_config, num_images):
    """The first ``num_images`` training images as the model is tested on
    them: the test pipeline, then the data preprocessor (normalised, padded
    float32 N x 3 x H x W tensors)."""
    from mmdeploy.apis.utils import build_task_processor
    from mmdeploy.utils import load_config
    from mmengine.dataset import pseudo_collate
    deploy_cfg, model_cfg = load_config(deploy_config, model_config)
    task = build_task_processor(model_cfg, deploy_cfg, 'cpu')
    dataset_cfg = copy.deepcopy(model_cfg.train_dataloader.dataset)
    dataset_cfg.pipeline = model_cfg.test_dataloader.dataset.pipeline
    dataset = task.build_dataset(dataset_cfg)
    if len(dataset) == 0:
        raise SystemExit(f'{model_config}: its training set is empty; int8 '
                         'needs images to calibrate on')
    preprocess = task.build_data_preprocessor()
    return [
        preprocess(pseudo_collate([dataset[i]]), False)['inputs']
        for i in range(min(num_images, len(dataset)))
    ]


def fit(image_batch, shape):
    """``image_batch`` zero-padded (as the data preprocessor pads) or cropped
    to ``shape``: NNCF collects its statistics on the model as converted,
    one compiled shape."""
    out = image_batch.new_zeros(tuple(shape))
    region = tuple(
        slice(0, min(a, b)) for a, b in zip(image_batch.shape, shape))
    out[region] = image_batch[region]
    return out


def quantise(model, inputs, keep_float):
    # The backbone predictor's quantisation (per-tensor activation ranges),
    # with what stays float named by --keep-float.
    import nncf

    from mmefficientmod.deploy.openvino import quantize_int8
    nncf.set_log_level(logging.WARNING)  # not a line per operation left out
    shape = model.input(0).get_partial_shape()
    if shape.is_static:
        inputs = [fit(x, shape.to_shape()) for x in inputs]
    return quantize_int8(
        model,
        inputs,
        ignored_types=(),
        ignored_patterns=KEEP_FLOAT[keep_float])


def main():
    import openvino as ov

    from mmefficientmod.deploy.mmdeploy_openvino import PRECISION_RT_INFO
    args = parse_args()
    if osp.abspath(args.out_dir) == osp.abspath(osp.dirname(args.model)):
        raise SystemExit('give an OUT_DIR other than the input model\'s '
                         'folder: the float32 model stays as it is')
    model = ov.Core().read_model(args.model)
    float_precision = args.float_precision
    if args.precision == 'bf16':
        float_precision = 'bf16'
    else:
        inputs = calibration_inputs(args.deploy_config, args.model_config,
                                    args.calib_images)
        model = quantise(model, inputs, args.keep_float)
    # In the model's rt_info, read by the project's OpenVINO wrapper.
    model.set_rt_info(float_precision, PRECISION_RT_INFO)
    os.makedirs(args.out_dir, exist_ok=True)
    out = osp.join(args.out_dir, osp.basename(args.model))
    ov.save_model(model, out, compress_to_fp16=False)
    for name in SDK_FILES:
        source = osp.join(osp.dirname(args.model), name)
        if osp.exists(source):
            shutil.copy(source, args.out_dir)
    print(f'{out}: {args.precision}, float operations in {float_precision}')


if __name__ == '__main__':
    main()
