#!/usr/bin/env bash
# Sets up the environment if needed (tools/install.sh), then runs the main job:
# EfficientMod-xxs Mask R-CNN and Semantic FPN trained for a few minutes on CPU
# on the embedded COCO / ADE20K data with tools/train.py, evaluated with
# tools/test.py (untrained vs trained), with pictures of the predictions.
# Extra arguments go to tools/main_job.py (e.g. --tasks seg).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/install.sh"
"$MMEFFICIENTMOD_PYTHON" tools/main_job.py "$@"
