#!/usr/bin/env bash
# Multi-process testing through torchrun and MMEngine's pytorch launcher.
#
#   tools/dist_test.sh CONFIG CHECKPOINT NUM_PROCESSES [test.py arguments ...]
#
# Same environment variables as tools/dist_train.sh (NNODES, NODE_RANK,
# MASTER_ADDR, PORT, PYTHON).
set -euo pipefail

if [ "$#" -lt 3 ]; then
    echo "usage: $0 CONFIG CHECKPOINT NUM_PROCESSES [test.py arguments ...]" >&2
    exit 2
fi
CONFIG=$1
CHECKPOINT=$2
NPROC=$3
shift 3
exec "$(dirname "$0")/_torchrun.sh" "$NPROC" test.py "$CONFIG" "$CHECKPOINT" --launcher pytorch "$@"
