"""Speed of EfficientMod against the authors' code, side by side in one process.

The forms, the columns and the commands of the tables: docs/speed.md (CPU)
and docs/gpu.md (``--device cuda``). Any config of ours, without the
authors' code::

    python tools/analysis_tools/benchmark.py CONFIG --backbone-only \\
        --forms eager deploy fp32 bf16
"""
import argparse
import contextlib
import copy
import csv
import itertools
import os
import os.path as osp
import platform
import tempfile
import time
import warnings
from typing import Callable, Dict, List, Optional

# A bounded spin of idle OpenMP threads, for batch-1 latency (docs/speed.md).
# It must be set before torch loads OpenMP; the caller's setting of either
# variable wins.
if 'OMP_WAIT_POLICY' not in os.environ:
    os.environ.setdefault('GOMP_SPINCOUNT', '10000')

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from authors_model import (UPSTREAM_BUILDERS, arch_config, build_upstream,
                           copy_weights_to_upstream, load_upstream_module)
from cpu_peak import measure_peaks
from get_flops import count_flops

from mmefficientmod.deploy import (cosine_similarity, cpu_predictor,
                                   deploy_copy, export_onnx, flatten_outputs,
                                   onnxruntime_session, top1_agreement)
from mmefficientmod.deploy.openvino import (compile_for_cpu, compiled_settings,
                                            openvino_available,
                                            openvino_runner)
from mmefficientmod.deploy.predictor import ENGINES
from mmefficientmod.models import TensorMode, build_model_from_config

REFERENCE_ENV = 'MMEFFICIENTMOD_REFERENCE'
DTYPES = ('float32', 'float16', 'bfloat16')
# Forms in PyTorch, on the device, in every --dtypes precision.
DEVICE_FORMS = ('authors-eager', 'eager', 'compiled')
# Forms on the CPU from float32 input, each with its own precision.
AUTHORS_OPENVINO = ('authors-openvino-fp32', 'authors-openvino-bf16')
CPU_FORMS = ('authors-onnx', *AUTHORS_OPENVINO, 'deploy', 'fp32', 'bf16',
             'int8') + tuple(f'{precision}-{engine}'
                             for precision, engines in ENGINES.items()
                             for engine in engines)
DEFAULT_FORMS = dict(
    cpu=('authors-eager', 'authors-onnx', *AUTHORS_OPENVINO, 'eager', 'deploy',
         'fp32', 'bf16', 'int8'),
    cuda=DEVICE_FORMS)
# Per device: precisions, batch sizes (latency at 1, throughput above),
# warm-up calls, timed rounds at batch 1.
DEFAULTS = dict(
    cpu=dict(dtypes=['float32'], batch_sizes=[1, 32], warmup=3, iters=20),
    cuda=dict(
        dtypes=list(DTYPES), batch_sizes=[1, 64, 256], warmup=5, iters=40))
# The CPU features that decide the reduced-precision engines' speed.
SPEED_FLAGS = ('avx512_bf16', 'avx512_vnni', 'amx_bf16', 'amx_int8')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n')[0],
        epilog=f'defaults by --device: {DEFAULTS}; without --forms, every '
        'form of the device that applies')
    add = parser.add_argument
    add('config', nargs='?', help='model config file')
    add('--archs', nargs='+', choices=UPSTREAM_BUILDERS)
    add('--upstream', metavar='FILE', help="the authors' EfficientMod.py")
    add('--backbone-only', action='store_true', help='time model.backbone')
    add('--device', choices=['cpu', 'cuda'], default='cpu')
    add('--forms', nargs='+', choices=DEVICE_FORMS + CPU_FORMS)
    add('--dtypes', nargs='+', choices=DTYPES)
    add('--batch-sizes', nargs='+', type=int)
    add('--input-size', nargs=2, type=int, default=[224, 224], metavar='N')
    add('--channels-last', action='store_true')
    add('--tf32', action='store_true', help='TF32 matrix products (cuda)')
    add('--compile-backend', default='inductor', help='of the compiled form')
    add('--threads', type=int, help='of torch and ONNX Runtime')
    add('--warmup', type=int, help='calls per form before timing')
    add('--iters', type=int, help='rounds at batch 1; N: max(3, iters*4/N)')
    add('--calib-batches', type=int, default=4, help='of the int8 forms')
    add('--train', action='store_true', help='time a training step')
    add('--csv', help='write the rows to this file as they come')
    args = parser.parse_args(argv)
    for key, value in DEFAULTS[args.device].items():
        if getattr(args, key) is None:
            setattr(args, key, value)

    if not args.config and not args.archs:
        parser.error('give a CONFIG or --archs')
    if any(b < 1 for b in args.batch_sizes):
        parser.error('--batch-sizes must be positive')
    if args.upstream and args.backbone_only:
        parser.error("--backbone-only cannot be compared with the authors' "
                     'model, which is a classifier; drop one of the two')
    if args.upstream and not args.archs:
        parser.error('--upstream needs --archs (the authors have the four '
                     'ImageNet classifiers)')
    if (args.upstream is None and args.archs and not args.backbone_only
            and os.environ.get(REFERENCE_ENV)):
        args.upstream = osp.join(os.environ[REFERENCE_ENV], 'upstream',
                                 'EfficientMod.py')
    if args.upstream and not osp.isfile(args.upstream):
        parser.error(f"no authors' model file at {args.upstream!r}: pass "
                     f'--upstream FILE or set {REFERENCE_ENV} to the folder '
                     'that holds upstream/EfficientMod.py')
    if args.forms is None:
        default = ('authors-eager', 'eager') if args.train else \
            DEFAULT_FORMS[args.device]
        args.forms = [
            f for f in default
            if (args.upstream or not f.startswith('authors-')) and (
                f not in AUTHORS_OPENVINO or openvino_available()) and (
                    f in DEVICE_FORMS or 'float32' in args.dtypes)
        ]
    if args.train:
        args.forms = [f for f in args.forms if f in DEVICE_FORMS]
    if not args.upstream and any(f.startswith('authors-') for f in args.forms):
        parser.error("the authors' forms need --upstream FILE or "
                     f'{REFERENCE_ENV}')
    cpu_forms = [f for f in args.forms if f in CPU_FORMS]
    if cpu_forms and (args.device != 'cpu' or 'float32' not in args.dtypes):
        parser.error(f'{cpu_forms} run on the CPU from float32 input: pass '
                     '--device cpu and keep float32 in --dtypes')
    if args.device == 'cuda' and not torch.cuda.is_available():
        parser.error('no GPU: torch.cuda.is_available() is False (torch '
                     f'{torch.__version__}); run on a CUDA machine, or pass '
                     '--device cpu to run the same code on the CPU')
    return args


def device_name(device: str = 'cpu') -> str:
    """The card, or the CPU with its logical cores and :data:`SPEED_FLAGS`."""
    if device == 'cuda':
        props = torch.cuda.get_device_properties(0)
        return (f'{props.name} ({props.total_memory / 2**30:.0f} GiB, '
                f'sm_{props.major}{props.minor}, '
                f'{props.multi_processor_count} SMs)')
    name, flags = platform.processor() or platform.machine(), set()
    with contextlib.suppress(OSError), open('/proc/cpuinfo') as f:
        for line in f:
            if line.startswith('model name'):
                name = line.split(':', 1)[1].strip()
            elif line.startswith('flags'):
                flags = set(line.split(':', 1)[1].split())
                break
    found = ' '.join(f for f in SPEED_FLAGS if f in flags)
    return (f'{name} ({os.cpu_count()} logical cores; '
            f"{found or 'none of ' + ' '.join(SPEED_FLAGS)})")


class Form:
    """One way of running the model, timed; ``engine`` says what ran."""

    def __init__(self, name: str, run: Callable, engine: str):
        self.name, self.run, self.engine = name, run, engine
        self.times: List[float] = []


def prepare(obj, args):
    """A tensor, or a copy of a module, on the device, in the memory format
    of the run."""
    if isinstance(obj, nn.Module):
        obj = copy.deepcopy(obj)
    obj = obj.to(args.device)
    if args.channels_last:
        obj = obj.to(memory_format=torch.channels_last)
    return obj


def autocast(device: str, dtype: str):
    if dtype == 'float32':
        return contextlib.nullcontext()
    return torch.autocast(device, dtype=getattr(torch, dtype))


def inference(module: nn.Module, device: str = 'cpu', dtype: str = 'float32'):
    """``module(x)`` in inference mode, autocast to a reduced ``dtype``."""

    def run(x):
        with torch.inference_mode(), autocast(device, dtype):
            return module(x)

    return run


def torch_module(name: str, ours: nn.Module, upstream: Optional[nn.Module],
                 args) -> nn.Module:
    """The model of a PyTorch form, prepared; compiled for ``compiled``."""
    module = prepare(upstream if name == 'authors-eager' else ours, args)
    if name == 'compiled':
        module = torch.compile(module, backend=args.compile_backend)
    return module


def device_forms(ours: nn.Module, upstream: Optional[nn.Module], args,
                 dtype: str) -> List[Form]:
    """The PyTorch forms on ``args.device`` in ``dtype``."""
    forms = []
    for name in args.forms:
        if name in DEVICE_FORMS:
            module = torch_module(name, ours, upstream, args)
            engine = f'torch {dtype}' + (' autocast'
                                         if dtype != 'float32' else '')
            if name == 'compiled':
                engine += f' compile={args.compile_backend}'
            run = inference(module, args.device, dtype)
            forms.append(Form(name, run, engine))
    return forms


def describe(engine: str, precision: str, settings: Dict) -> str:
    """What ran, e.g. ``openvino int8 (INFERENCE_PRECISION_HINT=f32 ...)``."""
    text = ' '.join(f'{k}={v}' for k, v in settings.items())
    return f'{engine} {precision}' + (f' ({text})' if text else '')


def cpu_forms(model: nn.Module, upstream: Optional[nn.Module], args,
              tmpdir: str) -> List[Form]:
    """The CPU engines' forms, each given float32 input."""
    gen = torch.Generator().manual_seed(1)
    calib = [
        torch.randn(4, 3, *args.input_size, generator=gen)
        for _ in range(args.calib_batches)
    ]
    shape = (1, 3, *args.input_size)
    authors_onnx = osp.join(tempfile.mkdtemp(dir=tmpdir), 'authors.onnx')
    forms = []
    for name in args.forms:
        if name not in CPU_FORMS:
            continue
        if name.startswith('authors-') and not osp.exists(authors_onnx):
            # One export per model for its ONNX Runtime and OpenVINO forms.
            export_onnx(upstream, authors_onnx, shape)
        if name == 'authors-onnx':
            session = onnxruntime_session(authors_onnx, args.threads)

            def run(x, session=session):
                return [
                    torch.from_numpy(o)
                    for o in session.run(None, {'input': x.numpy()})
                ]

            engine = 'onnxruntime fp32'
        elif name in AUTHORS_OPENVINO:
            precision = name.rpartition('-')[2]
            compiled = compile_for_cpu(authors_onnx, precision, args.threads)
            run = openvino_runner(compiled)
            engine = describe('openvino', precision,
                              compiled_settings(compiled))
        elif name == 'deploy':
            run = inference(TensorMode(deploy_copy(model), args.backbone_only))
            engine = 'torch fp32 deploy'
        else:
            precision, _, engine = name.partition('-')
            try:
                run = cpu_predictor(
                    model.backbone if args.backbone_only else model,
                    precision,
                    engine or 'auto',
                    calibration_data=calib,
                    threads=args.threads,
                    example_shape=shape)
            except NotImplementedError as err:
                print(f'  {name}: skipped ({err})')
                continue
            engine = describe(run.engine, precision, run.engine_settings)
        forms.append(Form(name, run, engine))
    return forms


def time_forms(forms: List[Form], make_args: Callable, args,
               batch: int) -> Dict[str, float]:
    """Warm each form up, time them in turns; the median of each.
    ``make_args(form)`` gives the arguments of a call."""

    def synchronize():
        if args.device == 'cuda':
            torch.cuda.synchronize()

    for form in forms:
        form.times = []
        for _ in range(max(args.warmup, 1)):
            form.run(*make_args(form))
        synchronize()
    rounds = args.iters if batch <= 4 else max(3, args.iters * 4 // batch)
    for i in range(rounds):
        # Rotate the order, so that no form always follows the same one.
        for form in forms[i % len(forms):] + forms[:i % len(forms)]:
            call_args = make_args(form)
            synchronize()
            start = time.perf_counter()
            form.run(*call_args)
            synchronize()
            form.times.append(time.perf_counter() - start)
    return {f.name: float(np.median(f.times)) for f in forms}


def outputs(out) -> List[torch.Tensor]:
    return [o.float().cpu() for o in flatten_outputs(out)]


def agreement(out, reference: List[torch.Tensor], reference_form: str,
              classifier: bool) -> Dict:
    """The agreement columns of outputs ``out`` with the float32 outputs
    ``reference`` of ``reference_form``."""
    out = outputs(out)
    return dict(
        reference=reference_form,
        cos_vs_fp32=min(
            cosine_similarity(a, b).item() for a, b in zip(out, reference)),
        max_abs_diff_vs_fp32=max(
            (a - b).abs().max().item() for a, b in zip(out, reference)),
        top1_agree_vs_fp32=(top1_agreement(out[0], reference[0])
                            if classifier else ''))


def benchmark_inference(ours: nn.Module, upstream: Optional[nn.Module], args,
                        report: Callable, model: nn.Module,
                        tmpdir: str) -> None:
    h, w = args.input_size
    gen = torch.Generator().manual_seed(0)
    # 8 images; with the compiled form as many as the first batch (up to
    # 8), so that its first compile serves that batch too.
    n = min(args.batch_sizes[0], 8) if 'compiled' in args.forms else 8
    check_x = torch.randn(n, 3, h, w, generator=gen)
    source = ours if upstream is None else upstream
    source_name = 'eager' if upstream is None else 'authors-eager'
    with torch.no_grad():
        reference = outputs(prepare(source, args)(check_x.to(args.device)))
    on_cpu = cpu_forms(model, upstream, args, tmpdir)
    for dtype in args.dtypes:
        forms = device_forms(ours, upstream, args, dtype)
        if dtype == 'float32':
            forms = sorted(
                forms + on_cpu, key=lambda f: args.forms.index(f.name))
        checks = {}
        for f in forms:
            inputs = check_x if f in on_cpu else prepare(check_x, args)
            checks[f.name] = agreement(
                f.run(inputs), reference, source_name, not args.backbone_only)
        for batch in args.batch_sizes:
            x = torch.randn(batch, 3, h, w, generator=gen)
            on_device = prepare(x, args)
            medians = time_forms(
                forms, lambda f: (x, )
                if f in on_cpu else (on_device, ), args, batch)
            for form in forms:
                report(form, 'inference', dtype, batch, medians,
                       **checks[form.name])


def train_step(net: nn.Module, args, dtype: str) -> Callable:
    """One training step of ``net``: forward under autocast, cross-entropy
    on logits (a mean square on other outputs), backward, AdamW; float16
    scales the loss."""
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
    scaler = torch.amp.GradScaler(args.device, enabled=dtype == 'float16')
    context = autocast(args.device, dtype)

    def step(x, labels):
        opt.zero_grad(set_to_none=True)
        with context:
            out = flatten_outputs(net(x))[0].float()
        loss = F.cross_entropy(out, labels % out.shape[1]) \
            if out.dim() == 2 else out.square().mean()
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    return step


def peak_memory_mb(step: Callable, call_args, device: str) -> float:
    """Peak memory allocated during one ``step`` beyond what was there."""
    if device == 'cuda':
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        step(*call_args)
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - before) / 2**20
    with torch.profiler.profile(
            activities=[torch.profiler.ProfilerActivity.CPU],
            profile_memory=True) as prof:
        step(*call_args)
    # The profiler's allocations and frees, in time order, summed up.
    events = sorted((e.start_ns(), e.nbytes())
                    for e in prof.profiler.kineto_results.events()
                    if e.name() == '[memory]')
    return max(itertools.accumulate((n for _, n in events), initial=0)) / 2**20


def benchmark_training(ours: nn.Module, upstream: Optional[nn.Module], args,
                       report: Callable) -> None:
    h, w = args.input_size
    gen = torch.Generator().manual_seed(0)
    for dtype in args.dtypes:
        for batch in args.batch_sizes:
            x = prepare(torch.randn(batch, 3, h, w, generator=gen), args)
            labels = torch.randint(
                0, 1000, (batch, ), generator=gen).to(args.device)
            forms = []
            for name in args.forms:
                net = torch_module(name, ours, upstream, args)
                forms.append(
                    Form(name, train_step(net.train(), args, dtype),
                         f'torch {dtype}'))
            medians = time_forms(forms, lambda f: (x, labels), args, batch)
            for form in forms:
                mb = peak_memory_mb(form.run, (x, labels), args.device)
                report(
                    form, 'train step', dtype, batch, medians, peak_mem_mb=mb)
            del forms
            if args.device == 'cuda':
                torch.cuda.empty_cache()


# Row keys (the CSV's first columns), printed as header, width, format.
COLUMNS = {
    'model': ('model', 8, ''),
    'mode': ('mode', 10, ''),
    'dtype': ('dtype', 8, ''),
    'batch': ('batch', 5, 'd'),
    'form': ('form', 21, ''),
    'median_ms': ('median ms', 9, '.2f'),
    'p90_ms': ('p90 ms', 8, '.2f'),
    'images_per_s': ('img/s', 8, '.1f'),
    'gflop_per_s': ('GFLOP/s', 8, '.1f'),
    'share_of_peak': ('of peak', 7, '.0%'),
    'x_authors_onnx': ('x a-onnx', 8, '.2f'),
    'x_authors_eager': ('x a-eager', 9, '.2f'),
    'x_authors_best': ('x a-best', 8, '.2f'),
    'reference': ('reference', 13, ''),
    'cos_vs_fp32': ('cos fp32', 9, '.6f'),
    'max_abs_diff_vs_fp32': ('max|d|', 8, '.1e'),
    'top1_agree_vs_fp32': ('top1', 5, '.3f'),
    'peak_mem_mb': ('peak MB', 7, '.0f'),
    'rounds': ('rounds', 6, 'd'),
    'engine': ('engine', 0, ''),
}


def print_line(cells: Dict) -> None:
    """Numbers right-aligned, text left-aligned, in the columns' widths."""
    line = []
    for key, (_, width, spec) in COLUMNS.items():
        value = cells[key]
        if spec and not isinstance(value, str):
            line.append(format(value, spec).rjust(width))
        else:
            line.append((value.rjust if spec else value.ljust)(width))
    print(' '.join(line), flush=True)


def make_row(model: str, flops: int, peaks: Dict[str, float], form: Form,
             mode: str, dtype: str, batch: int, medians: Dict[str, float],
             **extra) -> Dict:
    """A form's latency, throughput, share of the CPU's ``peaks`` and
    speed-ups over the authors' forms timed beside it; ``extra`` fills other
    columns."""
    median = medians[form.name]
    authors = [m for f, m in medians.items() if f.startswith('authors-')]

    def over(name):
        return medians[name] / median if name in medians else ''

    row = dict.fromkeys(COLUMNS, '')
    row.update(
        model=model,
        mode=mode,
        dtype=dtype,
        batch=batch,
        form=form.name,
        median_ms=median * 1e3,
        p90_ms=float(np.percentile(form.times, 90)) * 1e3,
        images_per_s=batch / median,
        x_authors_onnx=over('authors-onnx'),
        x_authors_eager=over('authors-eager'),
        x_authors_best=min(authors) / median if authors else '',
        rounds=len(form.times),
        engine=form.engine,
        **extra)
    # A training step's FLOPs are not counted (backward is not traced).
    if mode == 'inference':
        row['gflop_per_s'] = flops * batch / median / 1e9
        if peaks:
            row['share_of_peak'] = row['gflop_per_s'] / peaks[peak_precision(
                form.name, dtype)]
    return row


def peak_precision(form: str, dtype: str) -> str:
    """The precision whose peak a CPU row is held against."""
    if 'int8' in form:
        return 'int8'
    return 'bf16' if dtype == 'bfloat16' or 'bf16' in form else 'f32'


def metadata(args) -> Dict[str, str]:
    """The settings and versions the numbers were measured with."""
    versions = {}
    for name in ('onnxruntime', 'openvino'):
        try:
            versions[name] = __import__(name).__version__.split('-')[0]
        except ImportError:
            versions[name] = ''
    return dict(
        device=device_name(args.device),
        threads=str(torch.get_num_threads()),
        OMP_WAIT_POLICY=os.environ.get('OMP_WAIT_POLICY', ''),
        GOMP_SPINCOUNT=os.environ.get('GOMP_SPINCOUNT', ''),
        torch=torch.__version__,
        cuda=torch.version.cuda or '',
        cudnn=str(torch.backends.cudnn.version() or ''),
        **versions,
        channels_last=str(args.channels_last),
        tf32=str(args.tf32),
        compile_backend=args.compile_backend,
        input_size=f'{args.input_size[0]}x{args.input_size[1]}')


def main(argv=None) -> List[Dict]:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == 'cuda':
        torch.backends.cuda.matmul.allow_tf32 = args.tf32
        torch.backends.cudnn.allow_tf32 = args.tf32
        torch.backends.cudnn.benchmark = True
    meta = metadata(args)
    peaks = {}
    # The peak is OpenVINO's matrix multiply: without OpenVINO (the GPU
    # check's CPU rehearsal) the share column stays empty.
    if args.device == 'cpu' and not args.train and openvino_available():
        peaks = measure_peaks(torch.get_num_threads())
        meta.update({
            f'peak_{p}_gflop_per_s': f'{g:.0f}'
            for p, g in peaks.items()
        })
    print('; '.join(f'{k} {v or "unset"}' for k, v in meta.items()))
    authors = load_upstream_module(args.upstream) if args.upstream else None
    models = [(arch, arch_config(arch)) for arch in args.archs or []
              ] or [(osp.splitext(osp.basename(args.config))[0], args.config)]
    rows: List[Dict] = []
    with contextlib.ExitStack() as stack:
        tmpdir = stack.enter_context(tempfile.TemporaryDirectory())
        if args.csv:
            os.makedirs(osp.dirname(osp.abspath(args.csv)), exist_ok=True)
            out = stack.enter_context(open(args.csv, 'w', newline=''))
            writer = csv.DictWriter(out, list(COLUMNS) + list(meta))
            writer.writeheader()
        print_line({key: header for key, (header, *_) in COLUMNS.items()})
        for name, config in models:
            model = build_model_from_config(config)
            upstream = None
            if authors is not None:
                upstream = build_upstream(authors, name)
                copy_weights_to_upstream(model, upstream)
            ours = TensorMode(model, args.backbone_only)
            with warnings.catch_warnings():  # the tracer's, about ours
                warnings.simplefilter('ignore')
                flops = count_flops(ours, torch.randn(1, 3, *args.input_size))

            def report(*row_args, **extra):
                rows.append(make_row(name, flops, peaks, *row_args, **extra))
                print_line(rows[-1])
                if args.csv:
                    # Written at once: a run cut short keeps what it measured.
                    writer.writerow({**rows[-1], **meta})
                    out.flush()

            if args.train:
                benchmark_training(ours, upstream, args, report)
            else:
                benchmark_inference(ours, upstream, args, report, model,
                                    tmpdir)
    if args.csv:
        print(f'wrote {args.csv}')
    return rows


if __name__ == '__main__':
    main()
