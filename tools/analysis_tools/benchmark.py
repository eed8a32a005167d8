"""Latency and throughput of EfficientMod models, in several forms, side by side.

Forms (``--forms``):

* ``reference``: BASELINE. The same model with its backbone replaced by
  ``mmefficientmod.benchmark.ReferenceEfficientMod``, a straightforward eager
  implementation of the reference semantics (NCHW between blocks, permutes
  around every LayerNorm, explicit ``repeat`` of the context, hand-written
  softmax attention, nothing folded). Same weights. Speed-ups are against it.
* ``eager``: the model as built (``EfficientMod`` in eval mode).
* ``deploy``: after ``model.backbone.switch_to_deploy()``.
* ``compiled``: the deploy form through ``torch.compile`` (inductor).
* ``onnx``: the deploy form exported to ONNX and run by ONNX Runtime
  (float32 only).

All forms of one (model, batch size, dtype) are timed in one process,
interleaved round by round, after warm-up; the table gives the median and
90th/99th percentile latency, images per second at the median, the speed-up
of the median against ``reference``, and the agreement of the output with the
float32 ``reference`` output on the same input (cosine similarity and largest
absolute difference).

Examples::

    # The README table: the four ImageNet classifiers, batch 1 and 32.
    python tools/analysis_tools/benchmark.py --archs xxs xs s s_conv \\
        --batch-sizes 1 32 --dtypes float32 bfloat16 --threads 2 \\
        --csv work_dirs/benchmark.csv --plot work_dirs/benchmark.png

    # Any config, backbone only, on a GPU with float16 autocast.
    python tools/analysis_tools/benchmark.py CONFIG --backbone-only \\
        --device cuda --dtypes float32 float16 --forms reference eager deploy

    # Training step (forward + backward + SGD step): time and peak memory.
    python tools/analysis_tools/benchmark.py --archs xxs --train --batch-sizes 32
"""
import argparse
import csv
import os
import os.path as osp
import platform
import sys
import tempfile
import time
from typing import Callable, Dict, List

import numpy as np
import torch
import torch.nn as nn

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from mmefficientmod.benchmark import (DTYPES, autocast, cast_input,  # noqa: E402
                                      cosine_similarity, cpu_has_bf16,
                                      default_precision_mode, to_precision)
from mmefficientmod.benchmark.runtime import (TensorMode, arch_config,  # noqa: E402
                                              build_model_from_config,
                                              deploy_copy, export_onnx,
                                              find_backbone, flatten_outputs,
                                              load_weights, onnxruntime_session,
                                              reference_backbone, with_backbone)

ALL_FORMS = ('reference', 'eager', 'deploy', 'compiled', 'onnx')
TRAIN_FORMS = ('reference', 'eager', 'compiled')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config', nargs='?', help='model config file')
    parser.add_argument('--archs', nargs='+', choices=['xxs', 'xs', 's', 's_conv'],
                        help="benchmark this project's ImageNet classifier "
                        'config of each arch (instead of CONFIG)')
    parser.add_argument('--checkpoint', help='weights to load (optional; speed '
                        'does not depend on them)')
    parser.add_argument('--backbone-only', action='store_true',
                        help='time model.backbone rather than the whole model')
    parser.add_argument('--forms', nargs='+', default=list(ALL_FORMS),
                        choices=ALL_FORMS)
    parser.add_argument('--batch-sizes', nargs='+', type=int, default=[1, 32])
    parser.add_argument('--dtypes', nargs='+', default=['float32', 'bfloat16'],
                        choices=list(DTYPES))
    parser.add_argument('--precision-mode', choices=['auto', 'cast', 'autocast'],
                        default='auto', help="'cast': weights and inputs in the "
                        "dtype (CPU default); 'autocast': torch.autocast (GPU "
                        'default)')
    parser.add_argument('--input-size', nargs=2, type=int, default=[224, 224],
                        metavar=('H', 'W'))
    parser.add_argument('--channels-last', action='store_true',
                        help='feed inputs in channels-last memory format')
    parser.add_argument('--device', default='cpu', help="'cpu' or 'cuda[:i]'")
    parser.add_argument('--threads', type=int, default=None,
                        help='intra-op threads (torch and ONNX Runtime); '
                        'default: what torch uses now')
    parser.add_argument('--warmup', type=int, default=5)
    parser.add_argument('--iters', type=int, default=20,
                        help='timed rounds (each round runs every form once)')
    parser.add_argument('--batch-iters-scale', type=float, default=None,
                        help='rounds for batch N are iters * scale / N '
                        '(at least 5); default: iters for every batch size')
    parser.add_argument('--train', action='store_true',
                        help='time a training step (forward, backward, SGD '
                        'step) and its peak memory instead of inference')
    parser.add_argument('--csv', help='write the results to this CSV file')
    parser.add_argument('--plot', help='write a bar chart to this image file')
    return parser.parse_args(argv)


def device_name(device: str) -> str:
    dev = torch.device(device)
    if dev.type == 'cuda':
        return torch.cuda.get_device_name(dev)
    name = platform.processor() or platform.machine()
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    name = line.split(':', 1)[1].strip()
                    break
    except OSError:
        pass
    cores = os.cpu_count()
    return f'{name} ({cores} logical cores)'


def synchronize(device: str):
    if torch.device(device).type == 'cuda':
        torch.cuda.synchronize(device)


def percentile(values: List[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


class Form:
    """One way of running the model: a callable from the float32 input."""

    def __init__(self, name: str, run: Callable, note: str = ''):
        self.name = name
        self.run = run
        self.note = note
        self.times: List[float] = []


def make_inference_forms(model: nn.Module, args, dtype_name: str, batch: int,
                         tmpdir: str) -> List[Form]:
    dtype = DTYPES[dtype_name]
    device = args.device
    mode = (default_precision_mode(device) if args.precision_mode == 'auto'
            else args.precision_mode)
    wrap = lambda m: TensorMode(m, args.backbone_only).to(device).eval()  # noqa
    forms = []

    def runner(module):
        module = to_precision(module, dtype, mode)

        def run(x):
            with torch.inference_mode(), autocast(device, dtype, mode):
                return module(cast_input(x, dtype, mode))
        return run

    for name in args.forms:
        if name == 'reference':
            ref = with_backbone(model, reference_backbone(find_backbone(model)))
            forms.append(Form(name, runner(wrap(ref))))
        elif name == 'eager':
            forms.append(Form(name, runner(wrap(_copy(model)))))
        elif name == 'deploy':
            forms.append(Form(name, runner(wrap(deploy_copy(model)))))
        elif name == 'compiled':
            module = to_precision(wrap(deploy_copy(model)), dtype, mode)
            compiled = torch.compile(module)

            def run(x, compiled=compiled):
                with torch.inference_mode(), autocast(device, dtype, mode):
                    return compiled(cast_input(x, dtype, mode))
            forms.append(Form(name, run, 'torch.compile(deploy)'))
        elif name == 'onnx':
            if dtype != torch.float32:
                print(f'  onnx: skipped for {dtype_name} (float32 export only)')
                continue
            path = osp.join(tmpdir, f'model_{id(model)}.onnx')
            if not osp.exists(path):
                export_onnx(wrap(deploy_copy(model)).cpu(), path,
                            (1, 3, *args.input_size))
            session = onnxruntime_session(path, args.threads, device)

            def run(x, session=session):
                return [torch.from_numpy(o) for o in
                        session.run(None, {'input': x.cpu().numpy()})]
            forms.append(Form(name, run, 'ONNX Runtime, deploy form'))
    return forms


def _copy(model):
    import copy
    return copy.deepcopy(model).eval()


def time_forms(forms: List[Form], x: torch.Tensor, args, rounds: int):
    for form in forms:
        start = time.perf_counter()
        form.run(x)  # first call: compilation, allocation
        synchronize(args.device)
        form.first_call = time.perf_counter() - start
    for _ in range(args.warmup):
        for form in forms:
            form.run(x)
    synchronize(args.device)
    for i in range(rounds):
        order = forms[i % len(forms):] + forms[:i % len(forms)]
        for form in order:
            synchronize(args.device)
            start = time.perf_counter()
            form.run(x)
            synchronize(args.device)
            form.times.append(time.perf_counter() - start)


def agreement(forms: List[Form], x: torch.Tensor, reference_out):
    for form in forms:
        out = [o.float().cpu() for o in flatten_outputs(form.run(x))]
        form.cosine = min(cosine_similarity(a, b).item()
                          for a, b in zip(out, reference_out))
        form.max_diff = max((a - b).abs().max().item()
                            for a, b in zip(out, reference_out))


def benchmark_inference(name: str, model: nn.Module, args, rows: List[Dict],
                        tmpdir: str):
    h, w = args.input_size
    gen = torch.Generator().manual_seed(0)
    check_x = torch.randn(2, 3, h, w, generator=gen).to(args.device)
    ref_fp32 = TensorMode(with_backbone(model, reference_backbone(find_backbone(model))),
                          args.backbone_only).to(args.device).eval()
    with torch.no_grad():
        reference_out = [o.float().cpu() for o in flatten_outputs(ref_fp32(check_x))]
    del ref_fp32
    for dtype_name in args.dtypes:
        if (dtype_name != 'float32' and torch.device(args.device).type == 'cpu'
                and not cpu_has_bf16() and dtype_name == 'bfloat16'):
            print(f'  note: this CPU has no native bfloat16; {dtype_name} is emulated')
        for batch in args.batch_sizes:
            x = torch.randn(batch, 3, h, w, generator=gen).to(args.device)
            if args.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            forms = make_inference_forms(model, args, dtype_name, batch, tmpdir)
            rounds = args.iters
            if args.batch_iters_scale:
                rounds = max(5, int(round(args.iters * args.batch_iters_scale / batch)))
            time_forms(forms, x, args, rounds)
            agreement(forms, check_x, reference_out)
            ref_median = next((np.median(f.times) for f in forms
                               if f.name == 'reference'), None)
            for form in forms:
                median = float(np.median(form.times))
                rows.append(dict(
                    model=name, part='backbone' if args.backbone_only else 'model',
                    mode='inference', batch=batch, dtype=dtype_name, form=form.name,
                    median_ms=median * 1e3,
                    p90_ms=percentile(form.times, 90) * 1e3,
                    p99_ms=percentile(form.times, 99) * 1e3,
                    min_ms=min(form.times) * 1e3,
                    images_per_s=batch / median,
                    speedup_vs_reference=(ref_median / median) if ref_median else '',
                    cos_vs_fp32_reference=form.cosine,
                    max_abs_diff_vs_fp32_reference=form.max_diff,
                    peak_mem_mb='', rounds=len(form.times),
                    first_call_s=form.first_call))
                print_row(rows[-1])


def peak_memory_mb(step: Callable, device: str) -> float:
    """Peak memory allocated during ``step()`` beyond what existed before it."""
    if torch.device(device).type == 'cuda':
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        step()
        torch.cuda.synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - base) / 2**20
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU],
                                profile_memory=True) as prof:
        step()
    events = sorted((e.start_ns(), e.nbytes()) for e in
                    prof.profiler.kineto_results.events() if e.name() == '[memory]')
    level = peak = 0
    for _, nbytes in events:
        level += nbytes
        peak = max(peak, level)
    return peak / 2**20


def benchmark_training(name: str, model: nn.Module, args, rows: List[Dict]):
    h, w = args.input_size
    gen = torch.Generator().manual_seed(0)
    backbone = find_backbone(model)
    for batch in args.batch_sizes:
        x = torch.randn(batch, 3, h, w, generator=gen).to(args.device)
        forms = []
        for form_name in args.forms:
            if form_name not in TRAIN_FORMS:
                continue
            if form_name == 'reference':
                net = reference_backbone(backbone)
            else:
                net = _copy(backbone)
            net = net.to(args.device).train()
            opt = torch.optim.SGD(net.parameters(), lr=1e-3)
            fwd = torch.compile(net) if form_name == 'compiled' else net

            def step(_unused=None, x=x, fwd=fwd, opt=opt):
                opt.zero_grad(set_to_none=True)
                loss = sum(o.float().pow(2).mean() for o in fwd(x))
                loss.backward()
                opt.step()
            forms.append(Form(form_name, step))
        time_forms(forms, None, args, args.iters)
        ref_median = next((np.median(f.times) for f in forms
                           if f.name == 'reference'), None)
        for form in forms:
            mem = peak_memory_mb(form.run, args.device)
            median = float(np.median(form.times))
            rows.append(dict(
                model=name, part='backbone', mode='train step', batch=batch,
                dtype='float32', form=form.name, median_ms=median * 1e3,
                p90_ms=percentile(form.times, 90) * 1e3,
                p99_ms=percentile(form.times, 99) * 1e3,
                min_ms=min(form.times) * 1e3, images_per_s=batch / median,
                speedup_vs_reference=(ref_median / median) if ref_median else '',
                cos_vs_fp32_reference='', max_abs_diff_vs_fp32_reference='',
                peak_mem_mb=mem, rounds=len(form.times),
                first_call_s=form.first_call))
            print_row(rows[-1])


HEADER = ('{model:<10} {part:<8} {mode:<10} {batch:>5} {dtype:<9} {form:<10} '
          '{median:>9} {p90:>9} {p99:>9} {ips:>9} {speedup:>8} {cos:>9} {diff:>9} {mem:>8}')


def fmt(value, spec):
    return format(value, spec) if isinstance(value, (int, float)) else str(value)


def print_header():
    print(HEADER.format(model='model', part='part', mode='mode', batch='batch',
                        dtype='dtype', form='form', median='median ms',
                        p90='p90 ms', p99='p99 ms', ips='img/s', speedup='x ref',
                        cos='cos fp32', diff='max|d|', mem='peak MB'))


def print_row(row):
    print(HEADER.format(
        model=row['model'], part=row['part'], mode=row['mode'],
        batch=row['batch'], dtype=row['dtype'], form=row['form'],
        median=fmt(row['median_ms'], '.2f'), p90=fmt(row['p90_ms'], '.2f'),
        p99=fmt(row['p99_ms'], '.2f'), ips=fmt(row['images_per_s'], '.1f'),
        speedup=fmt(row['speedup_vs_reference'], '.2f'),
        cos=fmt(row['cos_vs_fp32_reference'], '.6f'),
        diff=fmt(row['max_abs_diff_vs_fp32_reference'], '.1e'),
        mem=fmt(row['peak_mem_mb'], '.0f')), flush=True)


def write_csv(rows: List[Dict], path: str, meta: Dict):
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    with open(path, 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) + list(meta))
        writer.writeheader()
        for row in rows:
            writer.writerow({**row, **meta})


def plot(rows: List[Dict], path: str, title: str):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    groups = sorted({(r['mode'], r['batch']) for r in rows})
    fig, axes = plt.subplots(len(groups), 1, squeeze=False,
                             figsize=(10, 3.2 * len(groups)))
    for ax, (mode, batch) in zip(axes[:, 0], groups):
        sel = [r for r in rows if r['mode'] == mode and r['batch'] == batch]
        labels = list(dict.fromkeys(f"{r['model']}\n{r['dtype']}" for r in sel))
        forms = list(dict.fromkeys(r['form'] for r in sel))
        width = 0.8 / len(forms)
        for k, form in enumerate(forms):
            values = []
            for label in labels:
                match = [r['images_per_s'] for r in sel if r['form'] == form and
                         f"{r['model']}\n{r['dtype']}" == label]
                values.append(match[0] if match else 0)
            ax.bar(np.arange(len(labels)) + k * width, values, width, label=form)
        ax.set_xticks(np.arange(len(labels)) + 0.4 - width / 2)
        ax.set_xticklabels(labels, fontsize=8)
        ax.set_ylabel('images / s')
        ax.set_title(f'{mode}, batch {batch}', fontsize=10)
        ax.legend(fontsize=8, ncol=len(forms))
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=120)


def main(argv=None):
    args = parse_args(argv)
    if not args.config and not args.archs:
        raise SystemExit('Give a CONFIG or --archs.')
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.train:
        args.backbone_only = True
    configs = [(osp.splitext(osp.basename(args.config))[0], args.config)] if args.config else []
    configs += [(arch, arch_config(arch)) for arch in args.archs or []]
    meta = dict(device=device_name(args.device), threads=torch.get_num_threads(),
                torch=torch.__version__, input_size=f'{args.input_size[0]}x{args.input_size[1]}')
    try:
        import onnxruntime
        meta['onnxruntime'] = onnxruntime.__version__
    except ImportError:
        if 'onnx' in args.forms:
            args.forms.remove('onnx')
            print('onnxruntime is not installed: skipping the onnx form')
    print(f"device: {meta['device']}; torch {meta['torch']}; threads "
          f"{meta['threads']}; input {meta['input_size']}")
    rows: List[Dict] = []
    print_header()
    with tempfile.TemporaryDirectory() as tmpdir:
        for name, config in configs:
            model = build_model_from_config(config).to(args.device)
            if args.checkpoint:
                load_weights(model, args.checkpoint)
            if args.train:
                benchmark_training(name, model, args, rows)
            else:
                benchmark_inference(name, model, args, rows, tmpdir)
    if args.csv and rows:
        write_csv(rows, args.csv, meta)
        print(f'wrote {args.csv}')
    if args.plot and rows:
        plot(rows, args.plot, f"{meta['device']}, {meta['threads']} threads, "
             f"torch {meta['torch']}, {meta['input_size']}")
        print(f'wrote {args.plot}')
    return rows


if __name__ == '__main__':
    main()
