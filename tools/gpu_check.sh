#!/usr/bin/env bash
# The GPU check: one prepared call on a bare GPU machine (docs/gpu.md).
#
#   bash tools/gpu_check.sh --prepare DIR --mmcv-wheel WHL
#       on a connected machine: fills DIR with the wheels the GPU machine's
#       image lacks (and the authors' model file, for the benchmark).
#   bash tools/gpu_check.sh DIR
#       on the GPU machine, without network: installs DIR's wheels and the
#       plugin, runs the `cuda` tests, short --amp trainings and the
#       benchmark within GPU_CHECK_BUDGET_S (default 480) seconds; logs and
#       summary.txt go to $OUT. Without a GPU: the CPU rehearsal.
#   bash tools/gpu_check.sh --rehearse DIR
#       on a connected machine without a GPU: the line above in a fresh
#       environment on top of the image's model, with no network.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
say() { printf '[gpu_check] %s\n' "$*" >&2; }
die() { printf '[gpu_check] FAILED: %s\n' "$*" >&2; exit 1; }

# The image's packages that the stack meets, as listed for the device
# machines' image (November 2026: Python 3.12, torch 2.11.0+cu130); the
# model environment holds them so that only what the image lacks is fetched.
DEVICE_IMAGE_SPECS=(
  "torch===2.11.0" "torchvision==0.26.0" "cuda-toolkit==13.0.2" "numpy"
  "opencv-python-headless" "matplotlib" "scipy" "pandas" "pyyaml" "pillow"
  "packaging" "pytest" "pytest-timeout" "onnx==1.23.1" "onnxruntime==1.30.0"
  "timm" "regex" "requests" "rich" "tabulate" "tqdm" "six" "click" "colorama"
  "pygments" "einops" "psutil" "wheel" "ninja" "markdown" "zipp"
)
MODEL="${GPU_CHECK_MODEL:-$HOME/.cache/mmefficientmod/gpu-model}"

python312() {
  local candidate
  for candidate in python3.12 "$(pyenv root 2>/dev/null)"/versions/3.12*/bin/python3.12; do
    # (a pyenv shim is on PATH even where it cannot run)
    "$candidate" -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null \
      && { "$candidate" -c 'import sys; print(sys.executable)'; return; }
  done
  die "no Python 3.12 found (the GPU machines' Python); install one (e.g. pyenv install 3.12)"
}

make_model() {
  if "$MODEL/bin/python" -c 'import torch, cv2, timm; assert torch.__version__.startswith("2.11.0")' 2>/dev/null; then
    say "model of the GPU image: $MODEL (reused)"; return
  fi
  say "model of the GPU image: $MODEL (Python 3.12, ${DEVICE_IMAGE_SPECS[*]}; a few minutes, once)"
  "$(python312)" -m venv "$MODEL" || die "could not create $MODEL"
  "$MODEL/bin/python" -m pip install -q --disable-pip-version-check "${DEVICE_IMAGE_SPECS[@]}" \
    || die "could not install the model of the GPU image into $MODEL"
}

if [[ "${1:-}" == "--prepare" ]]; then
  DIR="${2:?--prepare needs a folder}"; shift 2
  [[ "${1:-}" == "--mmcv-wheel" && -f "${2:-}" ]] \
    || die "--prepare DIR needs --mmcv-wheel FILE, an mmcv 2.1.0 wheel with CUDA ops for the GPU image's torch"
  MMCV_WHEEL="$2"
  make_model
  rm -f "$DIR"/*.whl; rm -rf "$DIR/reference"  # what an earlier fill left
  bash tools/install.sh --fill-wheelhouse "$DIR" --like "$MODEL/bin/python" --mmcv-wheel "$MMCV_WHEEL" \
    || die "filling $DIR failed (see above)"
  AUTHORS="${MMEFFICIENTMOD_REFERENCE:-}/upstream/EfficientMod.py"
  FIXTURE="${MMEFFICIENTMOD_REFERENCE:-}/parity/efficientmod_xxs.pt"
  if [[ -n "${MMEFFICIENTMOD_REFERENCE:-}" && -f "$AUTHORS" && -f "$FIXTURE" ]]; then
    mkdir -p "$DIR/reference/upstream" "$DIR/reference/parity"
    cp "$AUTHORS" "$DIR/reference/upstream/" && cp "$FIXTURE" "$DIR/reference/parity/"
    say "the authors' model file and the xxs parity fixture copied to $DIR/reference (not committed; the larger fixtures stay behind, the carry limit)"
  else
    say "MMEFFICIENTMOD_REFERENCE unset or without upstream/EfficientMod.py and parity/efficientmod_xxs.pt: the benchmark will time our forms only, and the device skips the parity tests"
  fi
  say "ready: $DIR ($(du -sh "$DIR" | cut -f1)); on the GPU machine: bash tools/gpu_check.sh $DIR"
  exit 0
fi

if [[ "${1:-}" == "--rehearse" ]]; then
  DIR="${2:?--rehearse needs the filled folder}"
  make_model
  VENV="$(mktemp -d)/rehearsal"
  BASE=$("$MODEL/bin/python" -c 'import sys; print(sys._base_executable)')
  "$BASE" -m venv "$VENV" || die "could not create $VENV"
  # The model's packages stand for the image's: they come after the
  # rehearsal environment's own on sys.path, as the image's would.
  SITE=$("$MODEL/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  echo "$SITE" > "$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/gpu_model.pth"
  say "rehearsal in $VENV, without network"
  unshare -n env PATH="$VENV/bin:$PATH" PYTHON="$VENV/bin/python" PIP_CONFIG_FILE=/dev/null \
    bash "$ROOT/tools/gpu_check.sh" "$DIR"
  STATUS=$?
  rm -rf "$(dirname "$VENV")"
  exit $STATUS
fi

DIR="${1:?usage: tools/gpu_check.sh DIR (or --prepare DIR --mmcv-wheel WHL, --rehearse DIR)}"
[[ -d "$DIR" ]] || die "$DIR is not a folder; fill it on a connected machine with: bash tools/gpu_check.sh --prepare $DIR --mmcv-wheel WHL"
DIR="$(cd "$DIR" && pwd)"
PY="${PYTHON:-python3}"
OUT="${OUT:-$ROOT/work_dirs/gpu_check}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
START=$SECONDS
STEPS=" ${GPU_CHECK_STEPS:-tests train bench} "
want() { [[ "$STEPS" == *" $1 "* ]]; }
WORK="$(mktemp -d)"  # data, work dirs, per-run logs: not brought back
trap 'rm -rf "$WORK"' EXIT
SUMMARY="$OUT/summary.txt"
: > "$SUMMARY"
note() { printf '%s\n' "$*" | tee -a "$SUMMARY" >&2; }
left() { echo $((BUDGET - (SECONDS - START))); }
# Runs "$@" with a time limit of $1 seconds (capped by the budget left),
# output to the log $2; prints the exit status (124: out of time).
limited() {
  local limit=$(($1 * SLOW)) log=$2; shift 2
  local cap=$(($(left) - 5))
  ((limit > cap)) && limit=$cap
  ((limit < 5)) && { echo "(skipped: the ${BUDGET} s budget is spent)" >> "$log"; return 124; }
  timeout --kill-after=10 "$limit" "$@" >> "$log" 2>&1
}
# No pip call of this script or below it may wait on a network.
export PYTHONUNBUFFERED=1 PYTHONWARNINGS="ignore" MPLBACKEND=Agg PIP_NO_INDEX=1
[[ -f "$DIR/reference/upstream/EfficientMod.py" ]] && export MMEFFICIENTMOD_REFERENCE="$DIR/reference"

# 1. The machine and the install.
{
  date -u; uname -srm; nvidia-smi 2>&1 | head -15 || true
  "$PY" -c 'import sys, torch; print(sys.version); print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())'
} > "$OUT/machine.txt" 2>&1
GPU=$("$PY" -c 'import torch; print(int(torch.cuda.is_available()))' 2>/dev/null || echo 0)
# The CPU rehearsal runs on small shared machines: three times the time.
SLOW=$([[ "$GPU" == 1 ]] && echo 1 || echo 3)
BUDGET="${GPU_CHECK_BUDGET_S:-$((480 * SLOW))}"
if [[ "$GPU" == 1 ]]; then
  note "GPU: $("$PY" -c 'import torch; p = torch.cuda.get_device_properties(0); print(f"{p.name}, {p.total_memory / 2**30:.0f} GiB, sm_{p.major}{p.minor}")') (torch $("$PY" -c 'import torch; print(torch.__version__)'))"
else
  note "no GPU: torch.cuda.is_available() is False here, so nothing below measures a GPU; the install runs for real, the GPU steps run their CPU rehearsal"
fi
INSTALL_START=$SECONDS
INSTALL_LOG="$OUT/install.log"
PIP=("$PY" -m pip install --disable-pip-version-check --no-index --no-deps --no-compile)
# Without dependency resolution: the folder holds exactly what the image
# lacks, and mmengine's opencv-python is met by the image's headless build.
install_stack() {
  if limited 180 "$INSTALL_LOG" "${PIP[@]}" "$DIR"/*.whl; then
    # PEP 660 with the image's setuptools: setup.py develop would call pip
    # again, with build isolation, which needs the network.
    limited 120 "$INSTALL_LOG" "${PIP[@]}" --no-build-isolation --use-pep517 -e "$ROOT"
  else
    # An image whose environment cannot be written to: a folder first on
    # PYTHONPATH instead, and the plugin from the checkout.
    note "install: $PY's environment refused the wheels (see install.log); installing them into $WORK/site instead"
    limited 180 "$INSTALL_LOG" "${PIP[@]}" --target "$WORK/site" "$DIR"/*.whl || return
    export PYTHONPATH="$ROOT:$WORK/site${PYTHONPATH:+:$PYTHONPATH}"
  fi
}
install_stack \
  && (cd / && limited 120 "$INSTALL_LOG" "$PY" -c '
import mmcv, mmcv.ops, mmdet, mmengine, mmpretrain, mmseg, mmefficientmod
print("stack:", "mmcv", mmcv.__version__, "(CUDA ops built with", mmcv.ops.get_compiling_cuda_version() + ")",
      "mmengine", mmengine.__version__, "mmdet", mmdet.__version__, "mmseg", mmseg.__version__,
      "mmpretrain", mmpretrain.__version__)')
STATUS=$?
"$PY" -m pip check >> "$INSTALL_LOG" 2>&1  # informational: opencv-python is met by the headless build
if [[ $STATUS != 0 ]]; then
  note "install: FAILED in $((SECONDS - INSTALL_START)) s (exit $STATUS); see install.log"; tail -20 "$INSTALL_LOG" >&2; exit 1
fi
note "install: ok in $((SECONDS - INSTALL_START)) s ($(ls "$DIR"/*.whl | wc -l) wheels, no network); $(grep '^stack:' "$INSTALL_LOG" | cut -d' ' -f2-)"

# 2. The `cuda` tests and the short trainings, side by side (the GPU has room).
DATA="$WORK/data"
"$PY" tools/dataset_converters/make_embedded_data.py --root "$DATA" --only coco > /dev/null \
  && "$PY" tools/dataset_converters/make_embedded_data.py --root "$DATA" --only ade20k > /dev/null \
  || note "embedded data: FAILED"
PYTEST_LOG="$OUT/pytest.log"
PYTEST_PID=""
if want tests; then
  limited 200 "$PYTEST_LOG" "$PY" -m pytest -m cuda -p no:cacheprovider -q -rs tests/ &
  PYTEST_PID=$!
fi
TRAIN_LOG="$OUT/train.log"
train() {  # name config dtype options...
  local name=$1 config=$2 dtype=$3; shift 3
  local log="$WORK/$name.log" amp=()
  [[ "$GPU" == 1 ]] && amp=(--amp "$dtype")
  limited 200 "$log" "$PY" tools/train.py "$config" --work-dir "$WORK/$name" "${amp[@]}" \
    --cfg-options "$@"
  echo $? > "$log.rc"
}
if [[ "$GPU" == 1 ]]; then
  DET_OPTS=(train_cfg.max_epochs=3 train_cfg.val_interval=3 train_dataloader.batch_size=8
            train_dataloader.num_workers=2)
  SEG_OPTS=(train_cfg.max_iters=80 train_cfg.val_interval=80 train_dataloader.num_workers=2)
  DTYPES=(float16 bfloat16)
else  # a few float32 CPU steps: the commands and the metric lines, not the GPU
  DET_OPTS=(train_cfg.max_epochs=1 train_cfg.val_interval=1 train_dataloader.dataset.indices=4
            val_dataloader.dataset.indices=2 default_hooks.logger.interval=1)
  SEG_OPTS=(train_cfg.max_iters=2 train_cfg.val_interval=2 val_dataloader.dataset.indices=2
            default_hooks.logger.interval=1)
  DTYPES=(float32)
fi
TRAIN_PIDS=()
want train || DTYPES=()
for dtype in "${DTYPES[@]}"; do
  train "mask-rcnn_$dtype" configs/mask_rcnn/mask-rcnn_efficientmod-xxs_fpn_embedded.py "$dtype" \
    "data_root=$DATA/coco/" "train_dataloader.dataset.data_root=$DATA/coco/" \
    "val_dataloader.dataset.data_root=$DATA/coco/" "test_dataloader.dataset.data_root=$DATA/coco/" \
    "val_evaluator.ann_file=$DATA/coco/annotations/instances_val2017.json" \
    "test_evaluator.ann_file=$DATA/coco/annotations/instances_val2017.json" "${DET_OPTS[@]}" &
  TRAIN_PIDS+=($!)
  train "sem-fpn_$dtype" configs/sem_fpn/fpn_efficientmod-xxs_embedded.py "$dtype" \
    "train_dataloader.dataset.data_root=$DATA/ade20k" "val_dataloader.dataset.data_root=$DATA/ade20k" \
    "test_dataloader.dataset.data_root=$DATA/ade20k" "${SEG_OPTS[@]}" &
  TRAIN_PIDS+=($!)
done
[[ -n "$PYTEST_PID" ]] && { wait "$PYTEST_PID"; PYTEST_RC=$?; }
wait "${TRAIN_PIDS[@]}"
PYTEST_LINE=$(grep -E '(passed|failed|skipped|error|deselected).* in [0-9.]+s' "$PYTEST_LOG" 2>/dev/null | tail -1 | tr -d '=')
if ! want tests; then
  :
elif [[ "$GPU" == 1 ]]; then
  note "pytest -m cuda: exit $PYTEST_RC:${PYTEST_LINE:- no summary line (out of time?)}"
  grep -E '^(FAILED|ERROR)' "$PYTEST_LOG" | head -20 | tee -a "$SUMMARY" >&2
else
  note "pytest -m cuda: no GPU, so every cuda test is skipped (collection on this stack checked):${PYTEST_LINE:- no summary line}"
fi
for dtype in "${DTYPES[@]}"; do
  for name in "mask-rcnn_$dtype" "sem-fpn_$dtype"; do
    log="$WORK/$name.log"
    { echo "===== $name (exit $(cat "$log.rc" 2>/dev/null))"; cat "$log"; } >> "$TRAIN_LOG"
    metrics=$(grep -E 'Epoch\(val\)|Iter\(val\)' "$log" | tail -1 | sed -E 's/.*(Epoch|Iter)\(val\)[^ ]* *//')
    loss=$(grep -oE ' loss: [0-9.naninf]+' "$log" | tail -1)
    mode=$([[ "$GPU" == 1 ]] && echo "--amp $dtype" || echo "no GPU: float32 on the CPU, 2 steps")
    note "train $name ($mode): exit $(cat "$log.rc" 2>/dev/null);${loss:- no loss logged}; val: ${metrics:-none}"
  done
done

# 3. The GPU benchmark, alone on the machine.
BENCH_LOG="$OUT/benchmark.log"
bench() {  # limit csv options...
  local limit=$1 csv=$2; shift 2
  limited "$limit" "$BENCH_LOG" "$PY" tools/analysis_tools/benchmark.py "$@" --csv "$OUT/$csv"
}
if ! want bench; then
  :
elif [[ "$GPU" == 1 ]]; then
  # Training first: it compiles nothing, so it is quick; inference then
  # takes what is left (Inductor compiles each precision and shape).
  bench 90 benchmark_train.csv --archs xxs s --device cuda --train --dtypes float16 bfloat16 --batch-sizes 256
  RC2=$?
  bench 240 benchmark_inference.csv --archs xxs s --device cuda --dtypes float32 float16 bfloat16 --batch-sizes 1 64 256
  RC1=$?
  note "benchmark: inference exit $RC1, training exit $RC2 (124: out of time; the CSVs keep the rows measured); $(grep -c '' "$OUT/benchmark_inference.csv" 2>/dev/null || echo 0) + $(grep -c '' "$OUT/benchmark_train.csv" 2>/dev/null || echo 0) CSV lines"
else  # the same forms and precisions on the CPU, at 64x64
  TINY=(--device cpu --archs xxs --input-size 64 64 --warmup 1 --iters 2 --threads 1)
  AUTHORS=(); [[ -n "${MMEFFICIENTMOD_REFERENCE:-}" ]] && AUTHORS=(authors-eager)
  bench 200 benchmark_inference.csv "${TINY[@]}" --forms "${AUTHORS[@]}" eager compiled \
    --dtypes float32 bfloat16 --batch-sizes 1 2 --compile-backend eager
  RC1=$?
  bench 100 benchmark_train.csv "${TINY[@]}" --train --dtypes bfloat16 --batch-sizes 2
  RC2=$?
  note "benchmark: no GPU, so no figures; its code ran on the CPU at 64x64: inference exit $RC1, training exit $RC2"
  # A rehearsal exists to catch what would fail on the device.
  (( RC1 == 0 && RC2 == 0 )) || die "rehearsal: the benchmark did not run (log: $OUT/benchmark.log)"
fi
note "total: $((SECONDS - START)) s of the ${BUDGET} s budget; logs in $OUT"
