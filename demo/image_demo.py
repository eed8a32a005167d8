"""Run a detector or segmentor on one image and write the visualised result.

    python demo/image_demo.py IMAGE CONFIG CHECKPOINT --out-file OUT.jpg
        [--device cpu|cuda:0] [--score-thr 0.3] [--opacity 0.5]

Works with MMDetection configs (boxes, masks, class names and scores are
drawn) and MMSegmentation configs (the predicted classes are painted over the
image); the library is read from the config's ``default_scope``.
"""
import argparse
import os
import os.path as osp
import sys

import mmcv
from mmengine.config import Config


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('img', help='image file')
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument(
        '--out-file',
        required=True,
        help='where to write the visualised result')
    parser.add_argument(
        '--device',
        default=None,
        help='cpu or cuda:N (default: cuda:0 if available)')
    parser.add_argument(
        '--score-thr',
        type=float,
        default=0.3,
        help='detection: lowest score drawn')
    parser.add_argument(
        '--opacity',
        type=float,
        default=0.5,
        help='segmentation: opacity of the painted classes')
    return parser.parse_args(argv)


def _device(arg):
    if arg:
        return arg
    import torch
    return 'cuda:0' if torch.cuda.is_available() else 'cpu'


def run_detection(args, cfg):
    from mmdet.apis import inference_detector, init_detector
    from mmdet.registry import VISUALIZERS
    model = init_detector(cfg, args.checkpoint, device=_device(args.device))
    result = inference_detector(model, args.img)
    visualizer = VISUALIZERS.build(model.cfg.visualizer)
    visualizer.dataset_meta = model.dataset_meta
    image = mmcv.imread(args.img, channel_order='rgb')
    visualizer.add_datasample(
        'result',
        image,
        data_sample=result,
        draw_gt=False,
        show=False,
        pred_score_thr=args.score_thr,
        out_file=args.out_file)
    pred = result.pred_instances
    keep = pred.scores >= args.score_thr
    classes = model.dataset_meta.get('classes')
    found = [
        f'{classes[int(label)] if classes else int(label)} '
        f'{float(score):.2f}'
        for label, score in zip(pred.labels[keep], pred.scores[keep])
    ]
    return f'{len(found)} objects above {args.score_thr}: ' + \
        (', '.join(found) if found else 'none')


def run_segmentation(args, cfg):
    from mmseg.apis import inference_model, init_model
    from mmseg.registry import VISUALIZERS
    model = init_model(cfg, args.checkpoint, device=_device(args.device))
    if _device(args.device) == 'cpu':
        from mmengine.model import revert_sync_batchnorm
        model = revert_sync_batchnorm(model)
    result = inference_model(model, args.img)
    visualizer = VISUALIZERS.build(model.cfg.visualizer)
    visualizer.dataset_meta = model.dataset_meta
    visualizer.alpha = args.opacity
    image = mmcv.imread(args.img, channel_order='rgb')
    visualizer.add_datasample(
        'result',
        image,
        data_sample=result,
        draw_gt=False,
        show=False,
        out_file=args.out_file,
        with_labels=False)
    labels = result.pred_sem_seg.data.unique().tolist()
    classes = model.dataset_meta.get('classes')
    names = [
        classes[i] if classes and i < len(classes) else str(i) for i in labels
    ]
    return 'classes present: ' + ', '.join(names)


def main(argv=None):
    args = parse_args(argv)
    if not osp.isfile(args.img):
        raise SystemExit(f'Image not found: {args.img}')
    if not osp.isfile(args.checkpoint):
        raise SystemExit(f'Checkpoint not found: {args.checkpoint}')
    import mmefficientmod  # noqa: F401  (registers EfficientMod)
    cfg = Config.fromfile(args.config)
    scope = cfg.get('default_scope')
    out_dir = osp.dirname(osp.abspath(args.out_file))
    os.makedirs(out_dir, exist_ok=True)
    if scope == 'mmdet':
        summary = run_detection(args, cfg)
    elif scope == 'mmseg':
        summary = run_segmentation(args, cfg)
    else:
        raise SystemExit(f'{args.config}: default_scope {scope!r} is neither '
                         'mmdet nor mmseg.')
    print(summary)
    print(f'wrote {args.out_file}')


if __name__ == '__main__':
    sys.exit(main())
