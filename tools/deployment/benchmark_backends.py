"""Whole-model latency: the PyTorch model against its MMDeploy backend models,
measured in one process on one image.

    python tools/deployment/benchmark_backends.py MODEL_CONFIG CHECKPOINT IMAGE \\
        --deployed DEPLOY_CONFIG BACKEND_FILE [--deployed ...] [--repeat 20]

Each model runs ``test_step`` (the network, its post-processing, and for
Mask R-CNN the pasting of the masks into the image) on the image as
MMDeploy's tools/test.py prepares it; the backend models are those
MMDeploy's tools/deploy.py wrote (``end2end.onnx``, ``end2end.xml``). The
models take turns in blocks of ``--repeat`` runs after a warm-up, for
``--rounds`` rounds; the median per model is printed as a Markdown table.
"""
import argparse
import statistics
import time

import torch


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('model_config')
    parser.add_argument('checkpoint')
    parser.add_argument('image')
    parser.add_argument(
        '--deployed',
        nargs=2,
        action='append',
        default=[],
        metavar=('DEPLOY_CONFIG', 'BACKEND_FILE'),
        help='a deploy config and the backend model tools/deploy.py made '
        'with it; repeat for each backend')
    parser.add_argument('--repeat', type=int, default=20)
    parser.add_argument('--rounds', type=int, default=2)
    return parser.parse_args()


def build(model_config, deploy_config, files):
    """A task processor's model (PyTorch if ``files`` is a checkpoint) and
    its input batch."""
    from mmdeploy.apis.utils import build_task_processor
    from mmdeploy.utils import get_backend, load_config
    deploy_cfg, model_cfg = load_config(deploy_config, model_config)
    task = build_task_processor(model_cfg, deploy_cfg, 'cpu')
    return task, get_backend(deploy_cfg).value


def main():
    args = parse_args()
    if not args.deployed:
        raise SystemExit('give at least one --deployed DEPLOY_CONFIG '
                         'BACKEND_FILE (from MMDeploy\'s tools/deploy.py)')
    models = {}
    # PyTorch, with the input the first deploy config prepares.
    task, _ = build(args.model_config, args.deployed[0][0], None)
    models['PyTorch'] = (task.build_pytorch_model(args.checkpoint),
                         task.create_input(args.image)[0])
    for deploy_config, backend_file in args.deployed:
        task, backend = build(args.model_config, deploy_config, backend_file)
        models[backend] = (task.build_backend_model([backend_file]),
                           task.create_input(args.image)[0])
    times = {name: [] for name in models}
    with torch.no_grad():
        for _ in range(args.rounds):
            for name, (model, inputs) in models.items():
                model.test_step(inputs)  # warm-up
                for _ in range(args.repeat):
                    start = time.perf_counter()
                    model.test_step(inputs)
                    times[name].append(time.perf_counter() - start)
    shape = tuple(models['PyTorch'][1]['inputs'][0].shape)
    base = statistics.median(times['PyTorch'])
    print(f'| model | median ms (input {shape}, '
          f'{torch.get_num_threads()} torch threads) | vs PyTorch |')
    print('|---|---|---|')
    for name, values in times.items():
        median = statistics.median(values)
        print(f'| {name} | {median * 1e3:.1f} | {base / median:.2f}x |')


if __name__ == '__main__':
    main()
