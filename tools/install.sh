#!/usr/bin/env bash
# Installs the OpenMMLab 2.0 stack and mmefficientmod (editable) into the active
# virtual environment, or into .venv at the repository root when none is active.
# Safe to run again: every step checks first and skips what is already in place.
# Sourced by tools/quickstart.sh and tools/run_tests.sh, which then use
# $MMEFFICIENTMOD_PYTHON.
#
# Offline machines (GPU clusters without internet):
#   tools/install.sh --fill-wheelhouse DIR [--python-version X.Y] [--with-torch]
#       on a connected machine: downloads every wheel and mmcv's source
#       distribution for Python X.Y (default: this python3's) into DIR;
#   tools/install.sh --wheelhouse DIR
#       on the offline machine: installs from DIR only, keeping a working
#       torch that is already there.
#   tools/install.sh --fill-wheelhouse DIR --like PYTHON --mmcv-wheel WHL
#       only the wheels that the interpreter PYTHON (a model of the offline
#       machine's environment, with its torch) lacks to run and test the
#       plugin, with a prebuilt mmcv wheel instead of its source; what
#       tools/gpu_check.sh installs on a GPU machine (docs/gpu.md).
# On a machine with a GPU (or with FORCE_CUDA=1) mmcv is built with its CUDA
# ops; tools/cuda_toolchain.py finds or installs the matching nvcc.
set -euo pipefail
export PYTHONWARNINGS="${PYTHONWARNINGS:-ignore:pkg_resources is deprecated}"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

say() { printf '\033[1m[install]\033[0m %s\n' "$*" >&2; }
fail() { printf '\033[1;31m[install] FAILED:\033[0m %s\n' "$*" >&2; exit 1; }

WHEELHOUSE="" FILL_WHEELHOUSE="" FILL_PYTHON="" FILL_TORCH=0 FILL_LIKE="" MMCV_WHEEL=""
# Options only when run, not when sourced (the sourcing script's own
# arguments are not meant for this one).
[[ "${BASH_SOURCE[0]}" == "$0" ]] && while [[ $# -gt 0 ]]; do
  case "$1" in
    --wheelhouse) WHEELHOUSE="${2:?--wheelhouse needs a folder}"; shift 2 ;;
    --fill-wheelhouse) FILL_WHEELHOUSE="${2:?--fill-wheelhouse needs a folder}"; shift 2 ;;
    --python-version) FILL_PYTHON="${2:?--python-version needs X.Y}"; shift 2 ;;
    --with-torch) FILL_TORCH=1; shift ;;
    --like) FILL_LIKE="${2:?--like needs a python interpreter}"; shift 2 ;;
    --mmcv-wheel) MMCV_WHEEL="${2:?--mmcv-wheel needs a wheel file}"; shift 2 ;;
    *) fail "unknown option $1 (options: --wheelhouse DIR, --fill-wheelhouse DIR [--python-version X.Y] [--with-torch] [--like PYTHON --mmcv-wheel WHL])" ;;
  esac
done

# Pinned to the combination recorded as working with mmcv's compiled ops.
TORCH_SPEC="torch===2.13.0"        # '===' skips a local CPU-only '+cpu' wheel whose
TORCHVISION_SPEC="torchvision==0.28.0"  # operators torchvision cannot load.
MMCV_SPEC="mmcv==2.1.0"            # mmdet 3.3 and mmseg 1.2 refuse mmcv >= 2.2
STACK_SPECS=(
  "mmengine==0.10.7" "mmdet==3.3.0" "mmsegmentation==1.2.2" "mmpretrain==1.2.0"
  "ftfy" "regex" "pycocotools" "pytest" "onnx" "onnxruntime" "matplotlib" "timm"
  # cpu_predictor's OpenVINO engine and its int8 quantisation (NNCF 3.4 keeps
  # numpy, torch and onnx as they are; it adds scikit-learn and pydot).
  "openvino==2026.4.1" "nncf==3.4.0"
  # openmim's own dependencies, less opendatalab (dataset downloads only), whose
  # openxlab pins setuptools 60 and old requests and would break this stack.
  "click" "colorama" "model-index" "pandas" "requests" "rich" "tabulate"
  # the lint that tools/run_tests.sh runs (.pre-commit-config.yaml)
  "flake8==7.5.0" "isort==9.0.2" "yapf==0.43.0" "pre-commit==4.7.0"
)
MIM_SPEC="openmim==0.3.9"  # `mim train/test/search mmefficientmod`
# MMDeploy (docs/deployment.md) without its dependencies: it pins
# protobuf<=3.20.2, which today's onnx refuses, and asks for grpcio and
# multiprocess, which its ONNX Runtime and OpenVINO paths never import. What
# those paths import: aenum (backend registry), prettytable (--speed-test).
MMDEPLOY_SPEC="mmdeploy==1.3.1"
MMDEPLOY_DEPS=("aenum" "prettytable" "openvino")
# The MMDeploy SDK's Python API: one wheel, for CPython 3.11 on x86-64 Linux,
# with its own ONNX Runtime 1.15.1 inside. Its pybind11 predates NumPy 2 and
# writes wrong result arrays under it, so it lives apart with NumPy 1.26, in
# the environment's mmdeploy-sdk folder (tools/deployment/sdk_predict.py).
SDK_SPECS=("mmdeploy-runtime==1.3.1" "numpy==1.26.4")
# mmcv's setup.py and mmengine's Config import pkg_resources (gone in setuptools 81).
BUILD_SPECS=("setuptools>=77.0.3,<81" "wheel" "ninja")
# nvcc and CUB/Thrust headers of the CUDA release torch 2.13's wheel pins (its
# cuda-toolkit requirement), for building mmcv's CUDA ops offline.
CUDA_TOOLKIT_VERSION="13.0.3"
# What a machine that already has torch needs to run and test the plugin
# (--fill-wheelhouse --like): no lint, mim or build tools.
RUNTIME_SPECS=(
  "mmengine==0.10.7" "mmdet==3.3.0" "mmsegmentation==1.2.2" "mmpretrain==1.2.0"
  "ftfy" "regex" "pycocotools" "pytest" "onnx" "onnxruntime" "timm" "setuptools>=77.0.3,<81"
)

[[ -z "$FILL_WHEELHOUSE" && -n "$FILL_LIKE$MMCV_WHEEL" ]] \
  && fail "--like and --mmcv-wheel go with --fill-wheelhouse DIR"
if [[ -n "$FILL_WHEELHOUSE" && -n "$FILL_LIKE" ]]; then
  [[ -x "$FILL_LIKE" ]] || fail "--like $FILL_LIKE is not an executable python"
  [[ -f "$MMCV_WHEEL" ]] || fail "--like needs --mmcv-wheel FILE, an mmcv 2.1.0 wheel built for that environment's torch (pip wheel --no-build-isolation --no-deps mmcv==2.1.0 on a machine like it)"
  mkdir -p "$FILL_WHEELHOUSE"
  REPORT="$(mktemp)"
  MMCV_REQ="$(cd "$(dirname "$MMCV_WHEEL")" && pwd)/$(basename "$MMCV_WHEEL")"
  say "resolving what $FILL_LIKE lacks: ${RUNTIME_SPECS[*]} $MMCV_REQ"
  "$FILL_LIKE" -m pip install --disable-pip-version-check -q --dry-run --only-binary :all: \
    --report "$REPORT" "${RUNTIME_SPECS[@]}" "$MMCV_REQ" \
    || fail "pip could not resolve the stack for $FILL_LIKE (see above)"
  # mmengine asks for opencv-python by name; opencv-python-headless (what GPU
  # images tend to hold) provides the same cv2 module, so it is not fetched
  # when cv2 already imports. The wheels are installed without dependency
  # resolution (pip install --no-deps), so the name does not matter.
  SKIP_CV2=$("$FILL_LIKE" -c 'import cv2' 2>/dev/null && echo 1 || echo 0)
  mapfile -t MISSING < <(python3 - "$REPORT" "$SKIP_CV2" <<'PY'
import json, sys
for item in json.load(open(sys.argv[1]))['install']:
    name, version = item['metadata']['name'], item['metadata']['version']
    if name.lower() == 'mmcv' or (sys.argv[2] == '1' and name.lower() == 'opencv-python'):
        continue
    print(f'{name}=={version}')
PY
)
  rm -f "$REPORT"
  FILL_PY="$("$FILL_LIKE" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
  say "wheels for Python $FILL_PY: ${MISSING[*]}"
  [[ ${#MISSING[@]} -eq 0 ]] || python3 -m pip download --disable-pip-version-check -q --no-deps \
    --only-binary :all: --python-version "$FILL_PY" --dest "$FILL_WHEELHOUSE" "${MISSING[@]}" \
    || fail "could not download the wheels (see above)"
  cp "$MMCV_WHEEL" "$FILL_WHEELHOUSE/"
  say "wheelhouse ready: $FILL_WHEELHOUSE ($(ls "$FILL_WHEELHOUSE" | wc -l) files, $(du -sh "$FILL_WHEELHOUSE" | cut -f1))"
  exit 0
fi

if [[ -n "$FILL_WHEELHOUSE" ]]; then
  # nvcc with nvvm/crt pinned to its own release (the tool asks pip).
  CUDA_TOOLCHAIN_SPEC=$(python3 "$ROOT/tools/cuda_toolchain.py" requirement "$CUDA_TOOLKIT_VERSION") \
    || fail "could not resolve the CUDA toolkit's pip requirement (see above)"
  mkdir -p "$FILL_WHEELHOUSE"
  FILL_PY="${FILL_PYTHON:-$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')}"
  DOWNLOAD=(python3 -m pip download --disable-pip-version-check --dest "$FILL_WHEELHOUSE")
  say "mmcv's source distribution into $FILL_WHEELHOUSE"
  # pip reads the sdist's metadata in an isolated build environment, where
  # mmcv's setup.py needs a setuptools that still has pkg_resources.
  BUILD_PIN="$(mktemp)"; printf '%s\n' "${BUILD_SPECS[0]}" > "$BUILD_PIN"
  PIP_CONSTRAINT="$BUILD_PIN" "${DOWNLOAD[@]}" --no-deps --no-binary :all: "$MMCV_SPEC" \
    || fail "could not download $MMCV_SPEC; check network access to the package index"
  rm -f "$BUILD_PIN"
  # mmcv's runtime requirements, read from its own source distribution.
  MMCV_DEPS=()
  while IFS= read -r dep; do MMCV_DEPS+=("$dep"); done < <(python3 - "$FILL_WHEELHOUSE/mmcv-${MMCV_SPEC#mmcv==}.tar.gz" <<'PY'
import sys, tarfile
sdist = sys.argv[1]
with tarfile.open(sdist) as tar:
    member = next(m for m in tar.getmembers() if m.name.endswith('requirements/runtime.txt'))
    for line in tar.extractfile(member).read().decode().splitlines():
        if line.strip() and not line.startswith('#'):
            print(line.strip())
PY
)
  SPECS=("${STACK_SPECS[@]}" "${MMDEPLOY_DEPS[@]}" "${BUILD_SPECS[@]}" "${MMCV_DEPS[@]}" "$CUDA_TOOLCHAIN_SPEC")
  [[ "$FILL_TORCH" == 1 ]] && SPECS+=("$TORCH_SPEC" "$TORCHVISION_SPEC")
  say "wheels for Python $FILL_PY: ${SPECS[*]} $MIM_SPEC"
  "${DOWNLOAD[@]}" --only-binary :all: --python-version "$FILL_PY" "${SPECS[@]}" \
    || fail "could not download the wheels for Python $FILL_PY (see above)"
  "${DOWNLOAD[@]}" --only-binary :all: --python-version "$FILL_PY" --no-deps "$MIM_SPEC" "$MMDEPLOY_SPEC" \
    || fail "could not download $MIM_SPEC $MMDEPLOY_SPEC"
  if [[ "$FILL_PY" == 3.11 ]]; then
    "${DOWNLOAD[@]}" --only-binary :all: --python-version "$FILL_PY" --no-deps "${SDK_SPECS[@]}" \
      || fail "could not download ${SDK_SPECS[*]}"
  fi
  say "wheelhouse ready: $FILL_WHEELHOUSE ($(ls "$FILL_WHEELHOUSE" | wc -l) files, $(du -sh "$FILL_WHEELHOUSE" | cut -f1)); install with: tools/install.sh --wheelhouse DIR"
  exit 0
fi

if [[ -n "$WHEELHOUSE" ]]; then
  [[ -d "$WHEELHOUSE" ]] || fail "wheelhouse $WHEELHOUSE is not a folder; fill one with tools/install.sh --fill-wheelhouse DIR on a connected machine"
  # Every pip call below (and tools/cuda_toolchain.py's) reads these.
  export PIP_NO_INDEX=1 PIP_FIND_LINKS="$(cd "$WHEELHOUSE" && pwd)"
  say "offline: installing only from $PIP_FIND_LINKS"
fi

if [[ -n "${VIRTUAL_ENV:-}" ]]; then
  PY="$VIRTUAL_ENV/bin/python"
  say "using the active virtual environment $VIRTUAL_ENV"
else
  if [[ ! -x "$ROOT/.venv/bin/python" ]]; then
    say "no virtual environment active: creating .venv at the repository root"
    python3 -m venv "$ROOT/.venv" || fail "could not create .venv (is python3-venv installed?)"
  fi
  PY="$ROOT/.venv/bin/python"
fi
PIP=("$PY" -m pip install --disable-pip-version-check)

if ! "$PY" -c 'import importlib.metadata as md, ninja, wheel; v = md.version("setuptools"); assert 77 <= int(v.split(".")[0]) < 81' 2>/dev/null; then
  say "build tools: ${BUILD_SPECS[*]} (needed to build mmcv; seconds)"
  "${PIP[@]}" -q "${BUILD_SPECS[@]}" || fail "could not install build tools"
fi

nms_works() {
  "$PY" - <<'PY' 2>/dev/null
import torch, torchvision
b = torch.tensor([[0., 0., 1., 1.]]); s = torch.tensor([1.])
assert torchvision.ops.nms(b, s, 0.5).tolist() == [0]
PY
}

if nms_works; then
  say "keeping the installed torch/torchvision pair ($("$PY" -c 'import torch, torchvision; print(torch.__version__, torchvision.__version__)'))"
else
  say "installing $TORCH_SPEC and $TORCHVISION_SPEC (no working torch/torchvision pair found; several GB installed with the CUDA libraries, the longest download of the setup)"
  "${PIP[@]}" "$TORCH_SPEC" "$TORCHVISION_SPEC" \
    || fail "could not install $TORCH_SPEC $TORCHVISION_SPEC; check network access to the package index"
  nms_works || fail "torchvision.ops.nms does not run with the installed torch; a CPU-only '+cpu' torch was probably picked: run 'pip install --force-reinstall $TORCH_SPEC'"
fi

mmcv_ops_work() {
  "$PY" -c 'import mmcv, mmcv.ops; from mmcv.ops import RoIAlign, nms; assert mmcv.__version__ == "2.1.0"' 2>/dev/null
}
HAS_GPU=$("$PY" -c 'import torch; print(int(torch.cuda.is_available()))')
BUILD_CUDA="${FORCE_CUDA:-$HAS_GPU}"
mmcv_has_cuda() {
  [[ "$BUILD_CUDA" == 0 ]] || "$PY" -c 'from mmcv.ops import get_compiling_cuda_version as v; assert v() != "not available"' 2>/dev/null
}
if mmcv_ops_work && mmcv_has_cuda; then
  say "mmcv 2.1.0 with compiled ops already installed (reused)"
else
  MMCV_PIP=("${PIP[@]}")
  if [[ "$BUILD_CUDA" == 1 ]]; then
    TOOLCHAIN=$("$PY" "$ROOT/tools/cuda_toolchain.py" setup) \
      || fail "no CUDA toolchain for mmcv's CUDA ops (the reason and its fix are above)"
    eval "$TOOLCHAIN"
    say "CUDA ops for TORCH_CUDA_ARCH_LIST=$TORCH_CUDA_ARCH_LIST with $CUDA_HOME/bin/nvcc"
    # pip's wheel cache may hold a CPU-only mmcv built earlier from the same sdist.
    "$PY" -m pip uninstall -y -q mmcv 2>/dev/null || true
    MMCV_PIP+=(--no-cache-dir)
  fi
  say "mmcv: $MMCV_SPEC with its C++ ops (RoIAlign, NMS for Mask R-CNN); from pip's wheel cache in seconds if built before on this machine, else compiled from source: about 10 minutes on 2 cores, much longer with the CUDA ops (CUDA ops: $BUILD_CUDA)"
  MMCV_WITH_OPS=1 FORCE_CUDA="$BUILD_CUDA" MAX_JOBS="${MAX_JOBS:-$(nproc)}" \
    "${MMCV_PIP[@]}" --no-build-isolation "$MMCV_SPEC" \
    || fail "building mmcv failed; it needs gcc/g++, the Python headers and torch importable (see the log above)"
  mmcv_ops_work || fail "mmcv installed but mmcv.ops does not load; reinstall with: MMCV_WITH_OPS=1 pip install --no-build-isolation --no-cache-dir --force-reinstall $MMCV_SPEC"
  mmcv_has_cuda || fail "mmcv was built without its CUDA ops; see the build log above for why nvcc was not used"
fi
if [[ "$HAS_GPU" == 1 ]]; then
  "$PY" "$ROOT/tools/cuda_toolchain.py" check-ops \
    || fail "mmcv's CUDA ops do not run on this GPU (the reason is above)"
fi

stack_ready() {
  "$PY" - <<'PY' 2>/dev/null
import importlib.metadata as md
import flake8, ftfy, isort, matplotlib, mim, nncf, onnx, onnxruntime, openvino, pre_commit, pycocotools, pytest, regex, timm, yapf  # noqa
import mmdet, mmengine, mmpretrain, mmseg  # noqa
pins = {'mmengine': '0.10.7', 'mmdet': '3.3.0', 'mmsegmentation': '1.2.2', 'mmpretrain': '1.2.0'}
assert all(md.version(name) == version for name, version in pins.items())
PY
}
if stack_ready; then
  say "OpenMMLab libraries already installed (reused)"
else
  say "OpenMMLab libraries and tools: ${STACK_SPECS[*]} $MIM_SPEC (wheels; usually under a minute)"
  "${PIP[@]}" -q "${STACK_SPECS[@]}" "${BUILD_SPECS[0]}" \
    || fail "could not install the OpenMMLab libraries"
  "${PIP[@]}" -q --no-deps "$MIM_SPEC" || fail "could not install $MIM_SPEC"
fi

mmdeploy_ready() {
  "$PY" - <<'PY' 2>/dev/null
import importlib.metadata as md
import aenum, openvino, prettytable  # noqa
assert md.version('mmdeploy') == '1.3.1'
PY
}
if mmdeploy_ready; then
  say "mmdeploy and OpenVINO already installed (reused)"
else
  say "mmdeploy (without its protobuf pin: --no-deps) and OpenVINO: $MMDEPLOY_SPEC ${MMDEPLOY_DEPS[*]} (wheels; seconds)"
  "${PIP[@]}" -q "${MMDEPLOY_DEPS[@]}" || fail "could not install ${MMDEPLOY_DEPS[*]}"
  "${PIP[@]}" -q --no-deps "$MMDEPLOY_SPEC" || fail "could not install $MMDEPLOY_SPEC"
fi
SDK_SITE="$("$PY" -c 'import sys; print(sys.prefix)')/mmdeploy-sdk"
if "$PY" -c "import mmdeploy_runtime" >/dev/null 2>&1; then
  say "MMDeploy SDK: removed from the environment itself, where NumPy 2 breaks it"
  "$PY" -m pip uninstall -y -q mmdeploy-runtime || fail "could not uninstall mmdeploy-runtime"
fi
if "$PY" -c "import sys, platform; sys.exit(sys.version_info[:2] != (3, 11) or platform.machine() != 'x86_64' or sys.platform != 'linux')"; then
  if PYTHONPATH="$SDK_SITE" "$PY" -c "import numpy, mmdeploy_runtime; assert numpy.__version__ == '1.26.4'" >/dev/null 2>&1; then
    say "MMDeploy SDK already installed in $SDK_SITE (reused)"
  else
    say "MMDeploy SDK with NumPy 1.26, apart in $SDK_SITE: ${SDK_SPECS[*]} (wheels; seconds)"
    "${PIP[@]}" -q --no-deps --upgrade --target "$SDK_SITE" "${SDK_SPECS[@]}" || fail "could not install ${SDK_SPECS[*]}"
  fi
else
  say "MMDeploy SDK skipped: ${SDK_SPECS[0]} has a wheel for CPython 3.11 on x86-64 Linux only"
fi

plugin_ready() {  # from / so that the checkout itself is not on sys.path
  [[ -e "$ROOT/mmefficientmod/.mim/configs" ]] || return 1  # setup.py links it
  (cd / && "$PY" -c "import mmefficientmod, os, sys; sys.exit(os.path.dirname(os.path.dirname(os.path.realpath(mmefficientmod.__file__))) != sys.argv[1])" "$ROOT" 2>/dev/null)
}
if plugin_ready; then
  say "mmefficientmod already installed from this checkout (reused)"
else
  say "mmefficientmod (editable: edits to the checkout apply at once; seconds)"
  "${PIP[@]}" -q --no-deps --no-build-isolation -e "$ROOT" || fail "could not install the plugin itself"
fi

# mim (0.3.9) looks for a package's configs and tools in <folder of its
# metadata>/mmefficientmod/.mim, and an editable install leaves the package in
# the checkout: link it there, so that `mim train/test mmefficientmod CONFIG`
# work. `pip uninstall mmefficientmod` does not remove this link.
MIM_LINK=$(cd / && "$PY" -c 'import importlib.metadata as md, os; print(os.path.join(md.distribution("mmefficientmod").locate_file(""), "mmefficientmod"))') \
  || fail "mmefficientmod's metadata is not found after its install"
if [[ "$(readlink -f "$MIM_LINK")" != "$ROOT/mmefficientmod" ]]; then
  [[ -e "$MIM_LINK" && ! -L "$MIM_LINK" ]] \
    && fail "$MIM_LINK is a copy of mmefficientmod from an earlier non-editable install; remove it (pip uninstall mmefficientmod), then run this again"
  say "linking the checkout's package beside its metadata, where mim looks for configs and tools"
  ln -sfn "$ROOT/mmefficientmod" "$MIM_LINK"
fi

(cd / && "$PY" -c 'import mmdet, mmseg, mmpretrain, mmcv.ops, mmefficientmod') \
  || fail "the stack is installed but does not import together (see the traceback above)"
say "ready: $PY"
export MMEFFICIENTMOD_PYTHON="$PY"
