"""Run the MMDeploy SDK on one image and print its predictions as JSON.

    python tools/deployment/sdk_predict.py Detector|Segmentor|Classifier \\
        SDK_DIR IMAGE [--repeat N]

``SDK_DIR``: what MMDeploy's ``tools/deploy.py --dump-info`` writes for ONNX
Runtime. The SDK needs NumPy 1.x, so the tool runs itself in a fresh
interpreter with the NumPy 1.26 folder that tools/install.sh fills first on
the path (docs/deployment.md, "The MMDeploy SDK").
"""
import argparse
import json
import os
import os.path as osp
import statistics
import sys
import time

SDK_SITE = osp.join(sys.prefix, 'mmdeploy-sdk')


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    add = parser.add_argument
    add('task', choices=('Detector', 'Segmentor', 'Classifier'))
    add('sdk_dir')
    add('image')
    add('--repeat', type=int, default=1, help='calls to time (default 1)')
    return parser.parse_args()


def as_json(task, result):
    if task == 'Classifier':
        return dict(
            labels=[int(label) for label, _ in result],
            scores=[float(score) for _, score in result])
    if task == 'Segmentor':
        return dict(map=result.tolist())
    bboxes, labels, _ = result
    return dict(bboxes=bboxes.tolist(), labels=labels.tolist())


def main():
    args = parse_args()
    import numpy
    if int(numpy.__version__.split('.')[0]) >= 2:
        if not osp.isdir(SDK_SITE) or SDK_SITE in sys.path:
            raise SystemExit(
                f'The MMDeploy SDK is not installed with NumPy 1.26 in '
                f'{SDK_SITE}: run tools/install.sh (mmdeploy-runtime has a '
                'wheel for CPython 3.11 on x86-64 Linux only).')
        os.environ['PYTHONPATH'] = os.pathsep.join(
            filter(None, [SDK_SITE, os.environ.get('PYTHONPATH')]))
        os.execv(sys.executable, [sys.executable, *sys.argv])

    if args.task == 'Detector':
        print(
            'warning: the Detector of MMDeploy SDK 1.3.1 races between its '
            'threads on CPU and returns garbage rows in some runs '
            '(open-mmlab/mmdeploy#2889; docs/deployment.md)',
            file=sys.stderr)
    import cv2
    import mmdeploy_runtime
    image = cv2.imread(args.image)
    if image is None:
        raise SystemExit(f'cannot read the image {args.image}')
    runner = getattr(mmdeploy_runtime, args.task)(
        model_path=args.sdk_dir, device_name='cpu', device_id=0)
    seconds = []
    for _ in range(max(args.repeat, 1)):
        start = time.perf_counter()
        result = runner(image)
        seconds.append(time.perf_counter() - start)
    out = as_json(args.task, result)
    out['latency_ms'] = statistics.median(seconds) * 1e3
    print(json.dumps(out))


if __name__ == '__main__':
    main()
