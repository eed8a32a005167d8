#!/usr/bin/env bash
# Installs the OpenMMLab 2.0 stack and mmefficientmod (editable) into the active
# virtual environment, or into .venv at the repository root when none is active.
# Safe to run again: every step checks first and skips what is already in place.
# Sourced by tools/quickstart.sh and tools/run_tests.sh, which then use
# $MMEFFICIENTMOD_PYTHON.
set -euo pipefail
export PYTHONWARNINGS="${PYTHONWARNINGS:-ignore:pkg_resources is deprecated}"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

say() { printf '\033[1m[install]\033[0m %s\n' "$*" >&2; }
fail() { printf '\033[1;31m[install] FAILED:\033[0m %s\n' "$*" >&2; exit 1; }

# Pinned to the combination recorded as working with mmcv's compiled ops.
TORCH_SPEC="torch===2.13.0"        # '===' skips a local CPU-only '+cpu' wheel whose
TORCHVISION_SPEC="torchvision==0.28.0"  # operators torchvision cannot load.
MMCV_SPEC="mmcv==2.1.0"            # mmdet 3.3 and mmseg 1.2 refuse mmcv >= 2.2
STACK_SPECS=(
  "mmengine==0.10.7" "mmdet==3.3.0" "mmsegmentation==1.2.2" "mmpretrain==1.2.0"
  "ftfy" "regex" "pycocotools" "pytest" "onnx" "onnxruntime" "matplotlib"
  # openmim's own dependencies, less opendatalab (dataset downloads only), whose
  # openxlab pins setuptools 60 and old requests and would break this stack.
  "click" "colorama" "model-index" "pandas" "requests" "rich" "tabulate"
)
MIM_SPEC="openmim==0.3.9"  # `mim train/test/search mmefficientmod`
# mmcv's setup.py and mmengine's Config import pkg_resources (gone in setuptools 81).
BUILD_SPECS=("setuptools>=77.0.3,<81" "wheel" "ninja")

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
if mmcv_ops_work; then
  say "mmcv 2.1.0 with compiled ops already installed (reused)"
else
  HAS_CUDA=$("$PY" -c 'import torch; print(int(torch.cuda.is_available()))')
  say "mmcv: $MMCV_SPEC with its C++ ops (RoIAlign, NMS for Mask R-CNN); from pip's wheel cache in seconds if built before on this machine, else compiled from source: about 10 minutes on 2 cores (CUDA ops: $HAS_CUDA)"
  MMCV_WITH_OPS=1 FORCE_CUDA="$HAS_CUDA" MAX_JOBS="${MAX_JOBS:-$(nproc)}" \
    "${PIP[@]}" --no-build-isolation "$MMCV_SPEC" \
    || fail "building mmcv failed; it needs gcc/g++, the Python headers and torch importable (see the log above)"
  mmcv_ops_work || fail "mmcv installed but mmcv.ops does not load; reinstall with: MMCV_WITH_OPS=1 pip install --no-build-isolation --no-cache-dir --force-reinstall $MMCV_SPEC"
fi

stack_ready() {
  "$PY" - <<'PY' 2>/dev/null
import importlib.metadata as md
import ftfy, matplotlib, mim, onnx, onnxruntime, pycocotools, pytest, regex  # noqa
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

plugin_ready() {  # from / so that the checkout itself is not on sys.path
  (cd / && "$PY" -c "import mmefficientmod, os, sys; sys.exit(os.path.dirname(os.path.dirname(mmefficientmod.__file__)) != sys.argv[1])" "$ROOT" 2>/dev/null)
}
if plugin_ready; then
  say "mmefficientmod already installed from this checkout (reused)"
else
  say "mmefficientmod (editable: edits to the checkout apply at once; seconds)"
  "${PIP[@]}" -q --no-deps --no-build-isolation -e "$ROOT" || fail "could not install the plugin itself"
fi

(cd / && "$PY" -c 'import mmdet, mmseg, mmpretrain, mmcv.ops, mmefficientmod') \
  || fail "the stack is installed but does not import together (see the traceback above)"
say "ready: $PY"
export MMEFFICIENTMOD_PYTHON="$PY"
