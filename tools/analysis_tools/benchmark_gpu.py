"""GPU speed of EfficientMod against the authors' code, side by side in one process.

Forms (``--forms``), all from the same weights, on one device:

* ``authors-eager``: the authors' model file, eager PyTorch. The file is
  ``--upstream FILE`` or, without it, ``upstream/EfficientMod.py`` in the
  folder named by the setting ``MMEFFICIENTMOD_REFERENCE``.
* ``eager``: this project's ImageNet classifier, eager PyTorch.
* ``compiled``: the same under ``torch.compile`` (``--compile-backend``,
  Inductor by default; it compiles once per precision and input shape, during
  the warm-up, which is not timed).

Each form runs in every ``--dtypes`` precision: ``float32``, or ``float16`` /
``bfloat16`` either under autocast (``--precision autocast``, the default:
what mixed-precision inference and training use) or with the model and input
cast (``--precision cast``). Inference is timed at every ``--batch-sizes``
(latency at batch 1, throughput at larger batches); forms are timed in turns,
round by round, after warm-up, with the device synchronised around each call.
Each row gives the median and 90th percentile time, images/s, the speed-up
against ``authors-eager`` of the same precision and batch, and the cosine
similarity of the logits with the authors' float32 eager logits on a separate
input.

``--train`` times a classifier training step instead (forward under autocast,
cross-entropy, backward, AdamW; float16 with a gradient scaler), with the
peak device memory of a step. The same code runs on the CPU
(``--device cpu``), which is how it is tested without a GPU.

Examples::

    # The GPU table (docs/gpu.md): inference, then AMP training at batch 256.
    python tools/analysis_tools/benchmark_gpu.py --archs xxs s \\
        --dtypes float32 float16 bfloat16 --batch-sizes 1 64 256 \\
        --csv work_dirs/benchmark_gpu/inference.csv
    python tools/analysis_tools/benchmark_gpu.py --archs xxs s --train \\
        --dtypes float16 bfloat16 --batch-sizes 256 \\
        --csv work_dirs/benchmark_gpu/train.csv
"""
import argparse
import contextlib
import copy
import csv
import os
import os.path as osp
import platform
import time
from typing import Callable, Dict, List, Optional

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from mmefficientmod.deploy import cosine_similarity, flatten_outputs
from mmefficientmod.deploy.authors_model import (build_upstream,
                                                 copy_weights_to_upstream,
                                                 load_upstream_module)
from mmefficientmod.models import TensorMode, build_model_from_config

CONFIG_DIR = osp.join(
    osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))), 'configs',
    'efficientmod')
ARCHS = ('xxs', 'xs', 's', 's_conv')
FORMS = ('authors-eager', 'eager', 'compiled')
DTYPES = ('float32', 'float16', 'bfloat16')
REFERENCE_ENV = 'MMEFFICIENTMOD_REFERENCE'
CSV_FIELDS = ('model', 'mode', 'dtype', 'precision', 'batch', 'form',
              'median_ms', 'p90_ms', 'images_per_s', 'x_authors_eager',
              'cos_vs_authors_fp32', 'peak_mem_mb', 'rounds')


def arch_config(arch: str) -> str:
    """This project's ImageNet classifier config of ``arch``."""
    return osp.join(CONFIG_DIR,
                    f"efficientmod-{arch.replace('_', '-')}_8xb256_in1k.py")


def default_upstream() -> Optional[str]:
    """The authors' file in the ``MMEFFICIENTMOD_REFERENCE`` folder, if set."""
    root = os.environ.get(REFERENCE_ENV)
    return osp.join(root, 'upstream', 'EfficientMod.py') if root else None


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--archs', nargs='+', choices=ARCHS, default=['xxs'])
    parser.add_argument(
        '--upstream',
        metavar='FILE',
        help="the authors' models/EfficientMod.py (default: "
        f'${REFERENCE_ENV}/upstream/EfficientMod.py)')
    parser.add_argument('--device', default='cuda', choices=['cuda', 'cpu'])
    parser.add_argument(
        '--forms',
        nargs='+',
        choices=FORMS,
        help="default: all three (without the authors' file: "
        'eager and compiled); with --train: authors-eager and eager')
    parser.add_argument(
        '--dtypes', nargs='+', choices=DTYPES, default=list(DTYPES))
    parser.add_argument(
        '--precision',
        choices=['autocast', 'cast'],
        default='autocast',
        help='float16/bfloat16 through autocast, or by casting the model '
        'and input (inference only)')
    parser.add_argument(
        '--batch-sizes', nargs='+', type=int, default=[1, 64, 256])
    parser.add_argument(
        '--input-size',
        nargs=2,
        type=int,
        default=[224, 224],
        metavar=('H', 'W'))
    parser.add_argument(
        '--channels-last',
        action='store_true',
        help='models and inputs in channels-last memory format')
    parser.add_argument(
        '--tf32',
        action='store_true',
        help='allow TF32 for float32 matrix products and convolutions')
    parser.add_argument(
        '--compile-backend',
        default='inductor',
        help='torch.compile backend of the compiled form')
    parser.add_argument(
        '--threads',
        type=int,
        help="torch's CPU threads (default: its own setting); on a shared "
        'machine one thread avoids waiting on busy cores')
    parser.add_argument('--warmup', type=int, default=5)
    parser.add_argument(
        '--iters',
        type=int,
        default=40,
        help='timed rounds at batch 1 (each round runs every form once); '
        'batch N gets max(5, iters * 8 / N)')
    parser.add_argument(
        '--train',
        action='store_true',
        help='time a classifier training step (autocast and AdamW)')
    parser.add_argument('--csv', help='write the rows to this CSV file')
    args = parser.parse_args(argv)
    if any(b < 1 for b in args.batch_sizes):
        parser.error('--batch-sizes must be positive')
    if args.upstream is None:
        args.upstream = default_upstream()
    if args.upstream and not osp.isfile(args.upstream):
        parser.error(f"no authors' model file at {args.upstream!r}: pass "
                     f'--upstream FILE or set {REFERENCE_ENV} to the folder '
                     'that holds upstream/EfficientMod.py')
    if args.forms is None:
        default = ('authors-eager', 'eager') if args.train else FORMS
        args.forms = [
            f for f in default if args.upstream or f != 'authors-eager'
        ]
    if 'authors-eager' in args.forms and not args.upstream:
        parser.error("the authors-eager form needs the authors' model file: "
                     f'--upstream FILE or {REFERENCE_ENV}')
    if args.train and args.precision == 'cast':
        parser.error('--train uses autocast (mixed precision); drop '
                     '--precision cast')
    if args.device == 'cuda' and not torch.cuda.is_available():
        parser.error('no GPU: torch.cuda.is_available() is False (torch '
                     f'{torch.__version__}); run on a CUDA machine, or pass '
                     '--device cpu to run the same code on the CPU')
    return args


def device_name(device: str) -> str:
    """The card (or CPU) the numbers were measured on."""
    if device == 'cuda':
        props = torch.cuda.get_device_properties(0)
        return (f'{props.name} ({props.total_memory / 2**30:.0f} GiB, '
                f'sm_{props.major}{props.minor}, '
                f'{props.multi_processor_count} SMs)')
    name = platform.processor() or platform.machine()
    with contextlib.suppress(OSError), open('/proc/cpuinfo') as f:
        for line in f:
            if line.startswith('model name'):
                name = line.split(':', 1)[1].strip()
                break
    return f'{name} ({os.cpu_count()} logical cores)'


def synchronize(device: str) -> None:
    if device == 'cuda':
        torch.cuda.synchronize()


def precision_context(device: str, dtype: str, precision: str):
    """Autocast for float16/bfloat16 under ``--precision autocast``."""
    if dtype == 'float32' or precision == 'cast':
        return contextlib.nullcontext()
    return torch.autocast(device, dtype=getattr(torch, dtype))


def prepare(module: nn.Module, args, dtype: str) -> nn.Module:
    """A copy of ``module`` on the device, in the memory format and (for
    ``--precision cast``) the dtype of the run."""
    module = copy.deepcopy(module).to(args.device)
    if args.precision == 'cast':
        module = module.to(getattr(torch, dtype))
    if args.channels_last:
        module = module.to(memory_format=torch.channels_last)
    return module


def prepare_input(x: torch.Tensor, args, dtype: str) -> torch.Tensor:
    x = x.to(args.device)
    if args.precision == 'cast':
        x = x.to(getattr(torch, dtype))
    if args.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


class Form:
    """One way of running the model: a callable of the prepared input."""

    def __init__(self, name: str, run: Callable):
        self.name = name
        self.run = run
        self.times: List[float] = []


def make_forms(ours: nn.Module, upstream: Optional[nn.Module], args,
               dtype: str) -> List[Form]:
    forms = []
    for name in args.forms:
        if name == 'authors-eager':
            module = prepare(upstream, args, dtype)
        else:
            module = prepare(TensorMode(ours), args, dtype)
            if name == 'compiled':
                module = torch.compile(module, backend=args.compile_backend)
        context = precision_context(args.device, dtype, args.precision)

        def run(x, module=module, context=context):
            with torch.inference_mode(), context:
                return module(x)

        forms.append(Form(name, run))
    return forms


def time_forms(forms: List[Form], make_args: Callable, warmup: int,
               rounds: int, device: str) -> None:
    """Warm each form up, then time them in turns, ``rounds`` times."""
    for form in forms:
        for _ in range(max(warmup, 1)):
            form.run(*make_args())
        synchronize(device)
    for i in range(rounds):
        # Rotate the order, so that no form always follows the same one.
        for form in forms[i % len(forms):] + forms[:i % len(forms)]:
            call_args = make_args()
            synchronize(device)
            start = time.perf_counter()
            form.run(*call_args)
            synchronize(device)
            form.times.append(time.perf_counter() - start)


def rounds_for(batch: int, iters: int) -> int:
    return iters if batch <= 8 else max(5, iters * 8 // batch)


def row(model: str,
        mode: str,
        dtype: str,
        precision: str,
        batch: int,
        form: Form,
        medians: Dict[str, float],
        cos='',
        peak='') -> Dict:
    median = medians[form.name]
    return dict(
        model=model,
        mode=mode,
        dtype=dtype,
        precision=precision,
        batch=batch,
        form=form.name,
        median_ms=median * 1e3,
        p90_ms=float(np.percentile(form.times, 90)) * 1e3,
        images_per_s=batch / median,
        x_authors_eager=(medians['authors-eager'] /
                         median if 'authors-eager' in medians else ''),
        cos_vs_authors_fp32=cos,
        peak_mem_mb=peak,
        rounds=len(form.times))


def benchmark_inference(name: str, ours: nn.Module,
                        upstream: Optional[nn.Module], args,
                        report: Callable[[Dict], None]) -> None:
    h, w = args.input_size
    gen = torch.Generator().manual_seed(0)
    # At the first batch size (up to 8): the compiled form's first compile
    # then serves the first timed batch too.
    check_x = torch.randn(min(args.batch_sizes[0], 8), 3, h, w, generator=gen)
    reference_model = upstream if upstream is not None else TensorMode(ours)
    with torch.no_grad():
        reference = flatten_outputs(
            prepare(reference_model, args,
                    'float32')(check_x.to(args.device)))[0].float().cpu()
    for dtype in args.dtypes:
        forms = make_forms(ours, upstream, args, dtype)
        cos = {}
        for form in forms:
            out = flatten_outputs(
                form.run(prepare_input(check_x, args, dtype)))[0]
            cos[form.name] = cosine_similarity(out.float().cpu(),
                                               reference).item()
        for batch in args.batch_sizes:
            x = prepare_input(
                torch.randn(batch, 3, h, w, generator=gen), args, dtype)
            for form in forms:
                form.times = []
            time_forms(forms, lambda: (x, ), args.warmup,
                       rounds_for(batch, args.iters), args.device)
            medians = {f.name: float(np.median(f.times)) for f in forms}
            for form in forms:
                report(
                    row(name, 'inference', dtype, args.precision, batch, form,
                        medians, cos[form.name]))


def train_step(net: nn.Module, args, dtype: str) -> Callable:
    """One AMP training step of ``net`` on a batch (forward, cross-entropy,
    backward, AdamW; float16 scales the loss)."""
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
    scaler = torch.amp.GradScaler(args.device, enabled=dtype == 'float16')
    context = precision_context(args.device, dtype, 'autocast')

    def step(x, labels):
        opt.zero_grad(set_to_none=True)
        with context:
            logits = flatten_outputs(net(x))[0]
            loss = F.cross_entropy(logits.float(), labels)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    return step


def peak_memory_mb(step: Callable, call_args, device: str):
    """Peak device memory of one ``step`` (CUDA only; '' on the CPU)."""
    if device != 'cuda':
        return ''
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    step(*call_args)
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() / 2**20


def benchmark_training(name: str, ours: nn.Module,
                       upstream: Optional[nn.Module], args,
                       report: Callable[[Dict], None]) -> None:
    h, w = args.input_size
    gen = torch.Generator().manual_seed(0)
    for dtype in args.dtypes:
        for batch in args.batch_sizes:
            x = prepare_input(
                torch.randn(batch, 3, h, w, generator=gen), args, 'float32')
            labels = torch.randint(
                0, 1000, (batch, ), generator=gen).to(args.device)
            forms = []
            for form_name in args.forms:
                source = upstream if form_name == 'authors-eager' else \
                    TensorMode(ours)
                net = prepare(source, args, 'float32').train()
                if form_name == 'compiled':
                    net = torch.compile(net, backend=args.compile_backend)
                forms.append(Form(form_name, train_step(net, args, dtype)))
            time_forms(forms, lambda: (x, labels), args.warmup,
                       rounds_for(batch, args.iters), args.device)
            medians = {f.name: float(np.median(f.times)) for f in forms}
            for form in forms:
                report(
                    row(name,
                        'train step',
                        dtype,
                        'autocast',
                        batch,
                        form,
                        medians,
                        peak=peak_memory_mb(form.run, (x, labels),
                                            args.device)))
            del forms
            if args.device == 'cuda':
                torch.cuda.empty_cache()


def metadata(args) -> Dict[str, str]:
    return dict(
        device=device_name(args.device),
        torch=torch.__version__,
        cuda=torch.version.cuda or '',
        cudnn=str(torch.backends.cudnn.version() or ''),
        channels_last=str(args.channels_last),
        tf32=str(args.tf32),
        compile_backend=args.compile_backend,
        threads=str(torch.get_num_threads()),
        input_size=f'{args.input_size[0]}x{args.input_size[1]}')


def print_row(r: Dict) -> None:

    def fmt(value, spec):
        return format(value, spec) if isinstance(value, float) else str(value)

    print(
        f"{r['model']:<7} {r['mode']:<10} {r['dtype']:<9} {r['batch']:>5} "
        f"{r['form']:<14} {fmt(r['median_ms'], '.3f'):>9} ms "
        f"{fmt(r['images_per_s'], '.1f'):>9} img/s  "
        f"x{fmt(r['x_authors_eager'], '.2f'):<6} "
        f"cos {fmt(r['cos_vs_authors_fp32'], '.6f'):<9} "
        f"peak {fmt(r['peak_mem_mb'], '.0f')} MB",
        flush=True)


def main(argv=None) -> List[Dict]:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.backends.cuda.matmul.allow_tf32 = args.tf32
    torch.backends.cudnn.allow_tf32 = args.tf32
    torch.backends.cudnn.benchmark = True
    meta = metadata(args)
    print('; '.join(f'{k} {v}' for k, v in meta.items()), flush=True)
    authors = load_upstream_module(args.upstream) \
        if 'authors-eager' in args.forms else None
    rows: List[Dict] = []
    writer = out = None
    if args.csv:
        os.makedirs(osp.dirname(osp.abspath(args.csv)), exist_ok=True)
        out = open(args.csv, 'w', newline='')
        writer = csv.DictWriter(out, fieldnames=list(CSV_FIELDS) + list(meta))
        writer.writeheader()

    def report(r: Dict) -> None:
        # Written row by row: a run cut short keeps what it measured.
        rows.append(r)
        print_row(r)
        if writer:
            writer.writerow({**r, **meta})
            out.flush()

    try:
        for arch in args.archs:
            ours = build_model_from_config(arch_config(arch)).eval()
            upstream = None
            if authors is not None:
                upstream = build_upstream(authors, arch)
                copy_weights_to_upstream(ours, upstream)
            if args.train:
                benchmark_training(arch, ours, upstream, args, report)
            else:
                benchmark_inference(arch, ours, upstream, args, report)
    finally:
        if out:
            out.close()
    if args.csv:
        print(f'wrote {args.csv}')
    return rows


if __name__ == '__main__':
    main()
