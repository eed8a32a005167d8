#!/usr/bin/env bash
# Sets up the environment if needed (tools/install.sh), checks the lint
# (.pre-commit-config.yaml: flake8, isort, yapf), then runs the test suite.
# Extra arguments go to pytest, e.g. `bash tools/run_tests.sh -m "not e2e"`
# for the fast tests only.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/install.sh"
say "lint: pre-commit run --all-files (flake8, isort, yapf)"
# The hooks run the linters installed beside this python.
PATH="$(dirname "$MMEFFICIENTMOD_PYTHON"):$PATH" \
  "$MMEFFICIENTMOD_PYTHON" -m pre_commit run --all-files --show-diff-on-failure \
  || fail "lint failed (see above); fix with: isort . && yapf -i -r mmefficientmod tools tests configs"
"$MMEFFICIENTMOD_PYTHON" -m pytest tests -q --durations=15 "$@"
