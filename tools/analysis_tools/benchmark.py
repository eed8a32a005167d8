"""Speed of EfficientMod against the authors' code, side by side in one process.

Inference forms (``--forms``), all on CPU, all from the same weights:

* ``authors-eager``: the authors' model file (``--upstream FILE``, their
  ``models/EfficientMod.py``), eager PyTorch, float32.
* ``authors-onnx``: the authors' model exported with ``torch.onnx.export``
  (constant folding) and run by ONNX Runtime, as their ``benchmark_onnx.py``
  and the paper's CPU column do (opset 17: their attention calls
  ``scaled_dot_product_attention``, which opset 12 cannot express).
* ``authors-openvino-fp32``, ``authors-openvino-bf16``: the same ONNX file
  compiled by OpenVINO at that precision, with the settings of
  ``cpu_predictor``'s OpenVINO engine: their graph in the engine that serves
  ours (when OpenVINO is installed).
* ``eager``: this project's model as built, float32.
* ``deploy``: after ``backbone.switch_to_deploy()``, float32 (PyTorch).
* ``fp32``, ``bf16``, ``int8``: :func:`mmefficientmod.deploy.cpu_predictor`
  at that precision with ``engine='auto'`` (OpenVINO when installed; int8 is
  calibrated on ``--calib-batches`` batches of the benchmark's random
  inputs).
* ``PRECISION-ENGINE`` (only when asked for): ``cpu_predictor`` with that
  engine, e.g. ``fp32-onnxruntime``, ``bf16-torch``, ``int8-onnxruntime``
  (dynamic), ``int8-onnxruntime-static``, ``fp32-openvino``;
  ``fp32-inductor`` and ``bf16-inductor`` compile for each input shape and
  batch size.

Every ONNX Runtime session has thread spinning off, so that it does not take
the cores from the form timed after it. Forms are timed in turns, round by
round, after warm-up. The table gives the median latency, images/s, the
speed-up against ``authors-onnx``, ``authors-eager`` and the fastest of the
authors' forms (``x_authors_best``: their graph in the best engine timed),
the engine and precision that ran (as the predictor records them), and the
agreement of the output with the authors' float32 eager output (or our eager
one without ``--upstream``) on a separate input: cosine similarity, largest
absolute difference and, for classifiers, top-1 agreement.

``--train`` times a classifier training step instead (forward, cross-entropy,
backward, AdamW step) of ``authors-eager`` and ``eager``, with the peak memory
allocated during a step.

Examples::

    # The table of docs/speed.md: the four ImageNet classifiers against the
    # authors' forms.
    python tools/analysis_tools/benchmark.py --archs xxs xs s s_conv \\
        --upstream ../EfficientMod/models/EfficientMod.py --threads 2 \\
        --forms authors-onnx authors-openvino-fp32 authors-openvino-bf16 \\
            fp32 bf16 int8 fp32-onnxruntime \\
        --csv work_dirs/benchmark/inference.csv

    # Training step, batch 32.
    python tools/analysis_tools/benchmark.py --archs xxs xs s s_conv \\
        --upstream ../EfficientMod/models/EfficientMod.py --threads 2 \\
        --train --batch-sizes 32

    # Any config of ours, backbone only, without the authors' code.
    python tools/analysis_tools/benchmark.py CONFIG --backbone-only \\
        --forms eager deploy fp32 bf16
"""
import argparse
import copy
import csv
import os
import os.path as osp
import platform
import tempfile
import time
from typing import Callable, Dict, List, Optional

# How idle OpenMP threads wait between PyTorch's parallel regions decides
# batch-1 latency. Sleeping at once (OMP_WAIT_POLICY=PASSIVE) makes every
# region wake its threads, which cost about 80 us per region on a 2-core
# virtual machine (a batch-1 xxs forward of the authors' model: 31.6 ms
# instead of 14.5 ms); libgomp's default spin (300,000 rounds) let single
# forwards take 0.8 s on a machine shared with other jobs. A bound of 10,000
# rounds (about 0.3 ms of spinning after the last region) keeps the fast
# case without holding the cores long from the next form or other jobs.
# It must be set before torch loads OpenMP; an explicit setting of the
# caller (either variable) wins.
if 'OMP_WAIT_POLICY' not in os.environ:
    os.environ.setdefault('GOMP_SPINCOUNT', '10000')

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from mmefficientmod.deploy import (cosine_similarity, cpu_predictor,
                                   deploy_copy, export_onnx, flatten_outputs,
                                   load_weights, onnxruntime_session,
                                   top1_agreement)
from mmefficientmod.deploy.authors_model import (build_upstream,
                                                 copy_weights_to_upstream,
                                                 load_upstream_module)
from mmefficientmod.deploy.openvino import (compile_for_cpu,
                                            openvino_available,
                                            openvino_runner)
from mmefficientmod.deploy.predictor import ENGINES
from mmefficientmod.models import TensorMode, build_model_from_config

CONFIG_DIR = osp.join(
    osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))), 'configs',
    'efficientmod')
ARCHS = ('xxs', 'xs', 's', 's_conv')
AUTHORS_OPENVINO = ('authors-openvino-fp32', 'authors-openvino-bf16')
UPSTREAM_FORMS = ('authors-eager', 'authors-onnx') + AUTHORS_OPENVINO
OWN_FORMS = ('eager', 'deploy', 'fp32', 'bf16', 'int8')
ENGINE_FORMS = tuple(f'{precision}-{engine}'
                     for precision, engines in ENGINES.items()
                     for engine in engines)
ALL_FORMS = UPSTREAM_FORMS + OWN_FORMS + ENGINE_FORMS
DEFAULT_FORMS = UPSTREAM_FORMS + OWN_FORMS
TRAIN_FORMS = ('authors-eager', 'eager')


def arch_config(arch: str) -> str:
    """This project's ImageNet classifier config of ``arch``."""
    name = f"efficientmod-{arch.replace('_', '-')}_8xb256_in1k.py"
    return osp.join(CONFIG_DIR, name)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config', nargs='?', help='model config file')
    parser.add_argument(
        '--archs',
        nargs='+',
        choices=ARCHS,
        help="benchmark this project's ImageNet classifier "
        'config of each arch (instead of CONFIG)')
    parser.add_argument(
        '--upstream',
        metavar='FILE',
        help="the authors' models/EfficientMod.py (a checkout "
        'of github.com/ma-xu/EfficientMod), timed side by side '
        'with the same weights')
    parser.add_argument(
        '--checkpoint',
        help='weights to load (optional; '
        'speed does not depend on them)')
    parser.add_argument(
        '--backbone-only',
        action='store_true',
        help='time model.backbone rather than the whole model '
        '(not with --upstream)')
    parser.add_argument(
        '--forms',
        nargs='+',
        choices=ALL_FORMS,
        help='forms to time (default: all that apply)')
    parser.add_argument('--batch-sizes', nargs='+', type=int, default=[1, 32])
    parser.add_argument(
        '--input-size',
        nargs=2,
        type=int,
        default=[224, 224],
        metavar=('H', 'W'))
    parser.add_argument(
        '--threads',
        type=int,
        default=None,
        help='intra-op threads of torch and ONNX Runtime '
        "(default: torch's current setting)")
    parser.add_argument('--warmup', type=int, default=3)
    parser.add_argument(
        '--iters',
        type=int,
        default=20,
        help='timed rounds at batch 1 (each round runs every '
        'form once); batch N gets max(3, iters * 4 / N)')
    parser.add_argument(
        '--calib-batches',
        type=int,
        default=4,
        help='calibration batches of the int8-onnxruntime-static form')
    parser.add_argument(
        '--train',
        action='store_true',
        help='time a training step and its peak memory')
    parser.add_argument('--csv', help='write the results to this CSV file')
    args = parser.parse_args(argv)
    if not args.config and not args.archs:
        parser.error('give a CONFIG or --archs')
    if args.upstream and args.backbone_only:
        parser.error("--backbone-only cannot be compared with the authors' "
                     'model, which is a classifier; drop one of the two')
    if args.upstream and args.config and not args.archs:
        parser.error('--upstream needs --archs (the authors have the four '
                     'ImageNet classifiers)')
    forms = args.forms or [
        f for f in DEFAULT_FORMS if (args.upstream or f not in UPSTREAM_FORMS)
        and (f not in AUTHORS_OPENVINO or openvino_available())
    ]
    if not args.upstream and set(forms) & set(UPSTREAM_FORMS):
        parser.error("the authors' forms need --upstream FILE")
    args.forms = [f for f in forms if not args.train or f in TRAIN_FORMS]
    return args


# The CPU features that decide the reduced-precision engines' speed.
SPEED_FLAGS = ('avx512_bf16', 'avx512_vnni', 'amx_bf16', 'amx_int8')


def device_name() -> str:
    """The CPU's model name, logical cores and :data:`SPEED_FLAGS`."""
    name = platform.processor() or platform.machine()
    flags = set()
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    name = line.split(':', 1)[1].strip()
                elif line.startswith('flags'):
                    flags = set(line.split(':', 1)[1].split())
                    break
    except OSError:
        pass
    found = ' '.join(f for f in SPEED_FLAGS
                     if f in flags) or 'none of ' + (' '.join(SPEED_FLAGS))
    return f'{name} ({os.cpu_count()} logical cores; {found})'


class Form:
    """One way of running the model: a callable of the float32 input."""

    def __init__(self, name: str, run: Callable, engine: str = ''):
        self.name = name
        self.run = run
        self.engine = engine  # what ran: engine, precision and settings
        self.times: List[float] = []


def ort_runner(session) -> Callable:

    def run(x):
        return [
            torch.from_numpy(o)
            for o in session.run(None, {'input': x.numpy()})
        ]

    return run


def torch_runner(module: nn.Module) -> Callable:

    def run(x):
        with torch.inference_mode():
            return module(x)

    return run


def make_forms(model: nn.Module, upstream: Optional[nn.Module], args,
               tmpdir: str) -> List[Form]:
    ours = TensorMode(model, args.backbone_only).eval()
    gen = torch.Generator().manual_seed(1)
    calib = [
        torch.randn(4, 3, *args.input_size, generator=gen)
        for _ in range(args.calib_batches)
    ]
    predicted = model.backbone if args.backbone_only else model
    forms = []
    authors_onnx = None
    for name in args.forms:
        engine = ''
        if name == 'authors-eager':
            run = torch_runner(upstream)
        elif name == 'authors-onnx' or name in AUTHORS_OPENVINO:
            # One export of this model for its ONNX Runtime and OpenVINO
            # forms, in a folder of its own (the next arch gets another).
            if authors_onnx is None:
                authors_onnx = osp.join(
                    tempfile.mkdtemp(dir=tmpdir), 'authors.onnx')
                export_onnx(upstream, authors_onnx, (1, 3, *args.input_size))
            if name == 'authors-onnx':
                run = ort_runner(
                    onnxruntime_session(authors_onnx, args.threads))
            else:
                compiled = compile_for_cpu(authors_onnx,
                                           name.rpartition('-')[2],
                                           args.threads)
                run, engine = openvino_runner(compiled), describe(compiled)
        elif name == 'eager':
            run = torch_runner(copy.deepcopy(ours))
        elif name == 'deploy':
            run = torch_runner(
                TensorMode(deploy_copy(model), args.backbone_only))
        else:
            precision, _, engine = name.partition('-')
            try:
                run = cpu_predictor(
                    predicted,
                    precision,
                    engine or 'auto',
                    calibration_data=calib,
                    threads=args.threads,
                    example_shape=(1, 3, *args.input_size))
            except NotImplementedError as err:
                print(f'  {name}: skipped ({err})')
                continue
            engine = describe(run.compiled_model, run.engine, precision)
        forms.append(Form(name, run, engine))
    return forms


def describe(compiled, engine: str = 'openvino', precision: str = '') -> str:
    """What ran, e.g. ``openvino int8 (INFERENCE_PRECISION_HINT=f32 ...)``."""
    if compiled is None:
        return f'{engine} {precision}'
    from mmefficientmod.deploy.openvino import compiled_settings
    settings = ' '.join(f'{k}={v}'
                        for k, v in compiled_settings(compiled).items())
    return f'{engine} {precision} ({settings})'.replace('  ', ' ')


def time_forms(forms: List[Form], x: Optional[torch.Tensor], warmup: int,
               rounds: int):
    for form in forms:
        for _ in range(max(warmup, 1)):
            form.run(x)
    for i in range(rounds):
        # Rotate the order, so that no form always follows the same one.
        for form in forms[i % len(forms):] + forms[:i % len(forms)]:
            start = time.perf_counter()
            form.run(x)
            form.times.append(time.perf_counter() - start)


def measure_agreement(form: Form, x: torch.Tensor,
                      reference: List[torch.Tensor], classifier: bool) -> Dict:
    out = [o.float() for o in flatten_outputs(form.run(x))]
    row = dict(
        cos_vs_fp32=min(
            cosine_similarity(a, b).item() for a, b in zip(out, reference)),
        max_abs_diff_vs_fp32=max(
            (a - b).abs().max().item() for a, b in zip(out, reference)))
    row['top1_agree_vs_fp32'] = (
        top1_agreement(out[0], reference[0]) if classifier else '')
    return row


def benchmark_inference(name: str, model: nn.Module,
                        upstream: Optional[nn.Module], args, rows: List[Dict],
                        tmpdir: str):
    h, w = args.input_size
    gen = torch.Generator().manual_seed(0)
    check_x = torch.randn(8, 3, h, w, generator=gen)
    if upstream is not None:
        ref_module, ref_name = upstream, 'authors-eager'
    else:
        ref_module, ref_name = TensorMode(model, args.backbone_only), 'eager'
    with torch.no_grad():
        reference = [o.float() for o in flatten_outputs(ref_module(check_x))]
    classifier = not args.backbone_only
    forms = make_forms(model, upstream, args, tmpdir)
    agreement = {
        f.name: measure_agreement(f, check_x, reference, classifier)
        for f in forms
    }
    for batch in args.batch_sizes:
        x = torch.randn(batch, 3, h, w, generator=gen)
        for form in forms:
            form.times = []
        time_forms(
            forms, x, args.warmup,
            max(3, args.iters * 4 // batch) if batch > 4 else args.iters)
        medians = {f.name: float(np.median(f.times)) for f in forms}
        for form in forms:
            rows.append(
                timing_row(
                    name,
                    'inference',
                    batch,
                    form,
                    medians,
                    x_authors_onnx=_ratio(medians, 'authors-onnx',
                                          medians[form.name]),
                    reference=ref_name,
                    **agreement[form.name],
                    peak_mem_mb=''))
            print_row(rows[-1])


def _ratio(medians: Dict[str, float], name: str, median: float):
    return medians[name] / median if name in medians else ''


def timing_row(model: str, mode: str, batch: int, form,
               medians: Dict[str, float], x_authors_onnx, **extra) -> Dict:
    """A result row: the form's latency, throughput and speed-ups over the
    authors' forms, then the ``extra`` columns."""
    median = medians[form.name]
    authors = [m for name, m in medians.items() if name.startswith('authors-')]
    return dict(
        model=model,
        mode=mode,
        batch=batch,
        form=form.name,
        median_ms=median * 1e3,
        p90_ms=float(np.percentile(form.times, 90)) * 1e3,
        images_per_s=batch / median,
        x_authors_onnx=x_authors_onnx,
        x_authors_eager=_ratio(medians, 'authors-eager', median),
        x_authors_best=min(authors) / median if authors else '',
        **extra,
        engine=form.engine,
        rounds=len(form.times))


def peak_memory_mb(step: Callable) -> float:
    """Peak CPU memory allocated during ``step()`` beyond what was there."""
    with torch.profiler.profile(
            activities=[torch.profiler.ProfilerActivity.CPU],
            profile_memory=True) as prof:
        step()
    events = sorted((e.start_ns(), e.nbytes())
                    for e in prof.profiler.kineto_results.events()
                    if e.name() == '[memory]')
    level = peak = 0
    for _, nbytes in events:
        level += nbytes
        peak = max(peak, level)
    return peak / 2**20


def benchmark_training(name: str, model: nn.Module,
                       upstream: Optional[nn.Module], args, rows: List[Dict]):
    h, w = args.input_size
    gen = torch.Generator().manual_seed(0)
    for batch in args.batch_sizes:
        x = torch.randn(batch, 3, h, w, generator=gen)
        labels = torch.randint(0, 1000, (batch, ), generator=gen)
        forms = []
        for form_name in args.forms:
            if form_name == 'authors-eager':
                net = copy.deepcopy(upstream)
            else:
                net = TensorMode(copy.deepcopy(model))
            net.train()
            opt = torch.optim.AdamW(net.parameters(), lr=1e-4)

            def step(_x=None, net=net, opt=opt):
                opt.zero_grad(set_to_none=True)
                out = flatten_outputs(net(x))[0]
                if out.dim() == 2:
                    loss = F.cross_entropy(out, labels % out.shape[1])
                else:
                    loss = out.float().square().mean()
                loss.backward()
                opt.step()

            forms.append(Form(form_name, step))
        time_forms(forms, None, args.warmup, max(3, args.iters * 4 // batch))
        medians = {f.name: float(np.median(f.times)) for f in forms}
        for form in forms:
            rows.append(
                timing_row(
                    name,
                    'train step',
                    batch,
                    form,
                    medians,
                    x_authors_onnx='',
                    reference='',
                    cos_vs_fp32='',
                    max_abs_diff_vs_fp32='',
                    top1_agree_vs_fp32='',
                    peak_mem_mb=peak_memory_mb(form.run)))
            print_row(rows[-1])


HEADER = ('{model:<8} {mode:<10} {batch:>5} {form:<21} {median:>9} {p90:>9} '
          '{ips:>8} {xonnx:>8} {xeager:>9} {xbest:>8} {cos:>9} {diff:>8} '
          '{top1:>6} {mem:>8}  {engine}')


def fmt(value, spec):
    return format(value, spec) if isinstance(value,
                                             (int, float)) else str(value)


def print_header():
    print(
        HEADER.format(
            model='model',
            mode='mode',
            batch='batch',
            form='form',
            median='median ms',
            p90='p90 ms',
            ips='img/s',
            xonnx='x a-onnx',
            xeager='x a-eager',
            xbest='x a-best',
            cos='cos fp32',
            diff='max|d|',
            top1='top1',
            mem='peak MB',
            engine='engine'))


def print_row(row):
    print(
        HEADER.format(
            model=row['model'],
            mode=row['mode'],
            batch=row['batch'],
            form=row['form'],
            median=fmt(row['median_ms'], '.2f'),
            p90=fmt(row['p90_ms'], '.2f'),
            ips=fmt(row['images_per_s'], '.1f'),
            xonnx=fmt(row['x_authors_onnx'], '.2f'),
            xeager=fmt(row['x_authors_eager'], '.2f'),
            xbest=fmt(row['x_authors_best'], '.2f'),
            cos=fmt(row['cos_vs_fp32'], '.6f'),
            diff=fmt(row['max_abs_diff_vs_fp32'], '.1e'),
            top1=fmt(row['top1_agree_vs_fp32'], '.3f'),
            mem=fmt(row['peak_mem_mb'], '.0f'),
            engine=row['engine']),
        flush=True)


def write_csv(rows: List[Dict], path: str, meta: Dict):
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    with open(path, 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) + list(meta))
        writer.writeheader()
        for row in rows:
            writer.writerow({**row, **meta})


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    authors = load_upstream_module(args.upstream) if args.upstream else None
    configs = ([(osp.splitext(osp.basename(args.config))[0], args.config,
                 None)] if args.config and not args.archs else [])
    configs += [(arch, arch_config(arch), arch) for arch in args.archs or []]
    import onnxruntime
    openvino = ''
    if openvino_available():
        import openvino
        openvino = openvino.__version__.split('-')[0]
    meta = dict(
        device=device_name(),
        threads=torch.get_num_threads(),
        omp_wait_policy=os.environ.get('OMP_WAIT_POLICY', ''),
        gomp_spincount=os.environ.get('GOMP_SPINCOUNT', ''),
        torch=torch.__version__,
        onnxruntime=onnxruntime.__version__,
        openvino=openvino,
        input_size=f'{args.input_size[0]}x{args.input_size[1]}')
    print(f"device: {meta['device']}; torch {meta['torch']}; onnxruntime "
          f"{meta['onnxruntime']}; openvino {meta['openvino'] or 'absent'}; "
          f"threads {meta['threads']}; "
          f"OMP_WAIT_POLICY {meta['omp_wait_policy'] or 'unset'}, "
          f"GOMP_SPINCOUNT {meta['gomp_spincount'] or 'unset'}; input "
          f"{meta['input_size']}")
    rows: List[Dict] = []
    print_header()
    with tempfile.TemporaryDirectory() as tmpdir:
        for name, config, arch in configs:
            model = build_model_from_config(config)
            if args.checkpoint:
                load_weights(model, args.checkpoint)
            upstream = None
            if authors is not None:
                upstream = build_upstream(authors, arch)
                copy_weights_to_upstream(model, upstream)
            if args.train:
                benchmark_training(name, model, upstream, args, rows)
            else:
                benchmark_inference(name, model, upstream, args, rows, tmpdir)
    if args.csv and rows:
        write_csv(rows, args.csv, meta)
        print(f'wrote {args.csv}')
    return rows


if __name__ == '__main__':
    main()
