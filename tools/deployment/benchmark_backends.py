"""Whole-model latency: the PyTorch model against its MMDeploy backend models,
measured in one process on one image, with the CPU's peak measured in the
same run (the columns and the ``--sdk`` row: docs/deployment.md).

    python tools/deployment/benchmark_backends.py MODEL_CONFIG CHECKPOINT IMAGE \\
        --deployed DEPLOY_CONFIG BACKEND_FILE [--deployed ...] [--repeat 20]
"""
import argparse
import json
import os.path as osp
import statistics
import subprocess
import sys
import time
from collections import namedtuple

import mmcv
import torch
from torch.utils.flop_counter import FlopCounterMode

# The peak lives with the backbone benchmark, which measures against it too.
sys.path.insert(
    0, osp.join(osp.dirname(osp.abspath(__file__)), '..', 'analysis_tools'))
from cpu_peak import measure_peaks  # noqa: E402

BACKBONE_SCOPE = '/backbone/'
# A model timed: its task processor, its input, the precision whose peak it
# is held against, and its OpenVINO IR (None for the other backends).
Form = namedtuple('Form', 'model task data peak ir')
SDK_ROW = 'MMDeploy SDK (onnxruntime fp32)'
SDK_PREDICT = osp.join(osp.dirname(osp.abspath(__file__)), 'sdk_predict.py')


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    add = parser.add_argument
    add('model_config')
    add('checkpoint')
    add('image')
    add('--deployed',
        nargs=2,
        action='append',
        default=[],
        metavar=('DEPLOY_CONFIG', 'BACKEND_FILE'),
        help='a deploy config and the backend model tools/deploy.py made '
        'with it; repeat for each backend')
    add('--sdk',
        nargs=2,
        metavar=('TASK', 'SDK_DIR'),
        help='Detector, Segmentor or Classifier, and its SDK model folder')
    add('--repeat', type=int, default=20, help='timed runs per block')
    add('--rounds', type=int, default=2, help='blocks per model, in turns')
    args = parser.parse_args()
    if not args.deployed:
        parser.error('give at least one --deployed DEPLOY_CONFIG '
                     "BACKEND_FILE (from MMDeploy's tools/deploy.py)")
    return args


def build_task(model_config, deploy_config):
    from mmdeploy.apis.utils import build_task_processor
    from mmdeploy.utils import load_config
    deploy_cfg, model_cfg = load_config(deploy_config, model_config)
    return build_task_processor(model_cfg, deploy_cfg, 'cpu')


def openvino_form(ir):
    """The row name of the OpenVINO model ``ir`` and the precision whose
    peak it is held against."""
    from mmefficientmod.deploy.mmdeploy_openvino import float_precision
    floats = float_precision(ir)
    if any(op.get_type_name() == 'FakeQuantize' for op in ir.get_ops()):
        return f'openvino int8 (float ops {floats})', 'int8'
    return f'openvino {floats}'.replace('f32', 'fp32'), floats


def openvino_backbone_share(ir, inputs):
    """The backbone's share of the operations' time in OpenVINO's
    performance counters, for the IR ``ir`` run on ``inputs``."""
    import openvino as ov

    from mmefficientmod.deploy.mmdeploy_openvino import float_precision
    model = ir.clone()
    model.reshape({model.input(0).get_any_name(): list(inputs.shape)})
    compiled = ov.Core().compile_model(
        model, 'CPU', {
            'INFERENCE_PRECISION_HINT': float_precision(ir),
            'PERF_COUNT': True
        })
    request = compiled.create_infer_request()
    for _ in range(3):
        request.infer([inputs.numpy()])
    times = {
        info.node_name: info.real_time.total_seconds()
        for info in request.profiling_info
    }
    total = sum(times.values())
    backbone = sum(t for name, t in times.items()
                   if name.startswith(BACKBONE_SCOPE))
    return backbone / total if total else float('nan')


def in_turns(forms, inputs, rounds, repeat):
    """Median seconds of each form's ``test_step`` on ``inputs(form)``
    (computed in the timed call), timed in turns: per round, a block of
    ``repeat`` calls of each form after one untimed call."""
    times = {name: [] for name in forms}
    for _ in range(rounds):
        for name, form in forms.items():
            form.model.test_step(inputs(form))
            for _ in range(repeat):
                start = time.perf_counter()
                form.model.test_step(inputs(form))
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def main():
    args = parse_args()
    threads = torch.get_num_threads()
    peaks = measure_peaks(threads)
    # PyTorch, with the input the first deploy config prepares.
    task = build_task(args.model_config, args.deployed[0][0])
    pytorch = task.build_pytorch_model(args.checkpoint)
    inputs = task.create_input(args.image)[0]
    forms = {'PyTorch fp32': Form(pytorch, task, inputs, 'f32', None)}
    for deploy_config, backend_file in args.deployed:
        task = build_task(args.model_config, deploy_config)
        backend = task.deploy_cfg.backend_config.type
        name, peak, ir = f'{backend} fp32', 'f32', None
        if backend == 'openvino':
            import openvino as ov
            ir = ov.Core().read_model(backend_file)
            name, peak = openvino_form(ir)
        forms[name] = Form(
            task.build_backend_model([backend_file]), task,
            task.create_input(args.image)[0], peak, ir)

    with torch.no_grad():
        image_batch = pytorch.data_preprocessor(inputs, False)['inputs']
        with FlopCounterMode(display=False) as counter:
            pytorch.test_step(inputs)
        flops = counter.get_total_flops() / 2
        with FlopCounterMode(display=False) as counter:
            pytorch.backbone(image_batch)
        backbone_flops = counter.get_total_flops() / 2
        # PyTorch's backbone, timed around it: each forward adds minus its
        # start and plus its end, so the sum is the time spent in it.
        spent = []
        pytorch.backbone.register_forward_pre_hook(
            lambda *_: spent.append(-time.perf_counter()))
        pytorch.backbone.register_forward_hook(
            lambda *_: spent.append(time.perf_counter()))
        medians = in_turns(forms, lambda f: f.data, args.rounds, args.repeat)
        calls = args.rounds * (args.repeat + 1)
        backbone_seconds = {'PyTorch fp32': sum(spent) / calls}
        # From the decoded image: MMDeploy's Python pre-processing included.
        decoded = mmcv.imread(args.image)
        end_to_end = in_turns(forms, lambda f: f.task.create_input(decoded)[0],
                              args.rounds, args.repeat)
    if args.sdk:
        # Its median call from the decoded image, in its own interpreter.
        cmd = [
            sys.executable, SDK_PREDICT, *args.sdk, args.image, '--repeat',
            str(args.rounds * args.repeat)
        ]
        out = subprocess.run(
            cmd, check=True, stdout=subprocess.PIPE, text=True).stdout
        end_to_end[SDK_ROW] = json.loads(
            out.strip().splitlines()[-1])['latency_ms'] / 1e3
    for name, form in forms.items():
        if form.ir is not None:
            backbone_seconds[name] = medians[name] * openvino_backbone_share(
                form.ir, image_batch)

    base = medians['PyTorch fp32']
    print(f'input {tuple(image_batch.shape)}, {threads} threads; '
          f'{flops / 1e9:.1f} GFLOP per image, backbone '
          f'{backbone_flops / 1e9:.1f} (one multiply-add counted once); '
          'peak measured here: ' + ', '.join(f'{p} {g:.0f} GFLOP/s'
                                             for p, g in peaks.items()))
    print('| model | median ms | vs PyTorch | backbone ms | rest ms | '
          'GFLOP/s | share of peak | end to end ms |')
    print('|---|---|---|---|---|---|---|---|')
    for name, median in medians.items():
        rate = flops / median / 1e9
        peak = forms[name].peak
        backbone = backbone_seconds.get(name)
        split = ('— | —' if backbone is None else
                 f'{backbone * 1e3:.0f} | {(median - backbone) * 1e3:.0f}')
        print(f'| {name} | {median * 1e3:.0f} | {base / median:.2f}x | '
              f'{split} | {rate:.1f} | {rate / peaks[peak]:.0%} of {peak} | '
              f'{end_to_end[name] * 1e3:.0f} |')
    if args.sdk:
        print(f'| {SDK_ROW} | — | — | — | — | — | — | '
              f'{end_to_end[SDK_ROW] * 1e3:.0f} |')


if __name__ == '__main__':
    main()
