#!/usr/bin/env bash
# Sets up the environment if needed (tools/install.sh), then runs the test
# suite. Extra arguments go to pytest, e.g. `bash tools/run_tests.sh -k backbone`.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/install.sh"
"$MMEFFICIENTMOD_PYTHON" -m pytest tests -q --durations=15 "$@"
