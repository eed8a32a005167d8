#!/usr/bin/env bash
# Sets up the environment if needed (tools/install.sh), then runs the main job
# on the embedded default: every arch built from its config, the parity
# fixtures loaded through the checkpoint converter, params, FLOPs and parity.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/install.sh"
"$MMEFFICIENTMOD_PYTHON" tools/analysis_tools/parity_report.py "$@"
