#!/usr/bin/env bash
# Multi-process training through torchrun and MMEngine's pytorch launcher.
#
#   tools/dist_train.sh CONFIG NUM_PROCESSES [train.py arguments ...]
#
# One node: NUM_PROCESSES processes (one per GPU; on a machine without GPUs,
# CPU processes that communicate over gloo). Several nodes: run it on every
# node with NNODES, NODE_RANK, MASTER_ADDR and PORT set the same way as for
# torchrun. PYTHON selects the interpreter (default: python).
set -euo pipefail

if [ "$#" -lt 2 ]; then
    echo "usage: $0 CONFIG NUM_PROCESSES [train.py arguments ...]" >&2
    exit 2
fi
CONFIG=$1
NPROC=$2
shift 2
exec "$(dirname "$0")/_torchrun.sh" "$NPROC" train.py "$CONFIG" --launcher pytorch "$@"
