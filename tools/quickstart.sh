#!/usr/bin/env bash
# Sets up the environment if needed (tools/install.sh), then runs the main
# job (tools/main_job.py), the paper's pipeline in miniature on the embedded
# data: pretrain EfficientMod-xxs on ImageNet-layout shapes, then train Mask
# R-CNN and Semantic FPN from scratch and from those weights, and compare.
# Extra arguments go to tools/main_job.py (e.g. --work-dir DIR).
set -euo pipefail
started=$SECONDS
source "$(dirname "${BASH_SOURCE[0]}")/install.sh"
setup=$((SECONDS - started))
printf '\033[1m[quickstart]\033[0m setup took %d min %d s; starting the main job (about a quarter of an hour on 2 cores)\n' \
  $((setup / 60)) $((setup % 60)) >&2
"$MMEFFICIENTMOD_PYTHON" tools/main_job.py "$@"
total=$((SECONDS - started))
printf '\033[1m[quickstart]\033[0m done in %d min %d s (setup %d min %d s)\n' \
  $((total / 60)) $((total % 60)) $((setup / 60)) $((setup % 60)) >&2
