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
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-${MASTER_PORT:-29500}}
MASTER_ADDR=${MASTER_ADDR:-127.0.0.1}
PYTHON=${PYTHON:-python}
TOOLS_DIR="$(cd "$(dirname "$0")" && pwd)"

PYTHONPATH="$(dirname "$TOOLS_DIR")${PYTHONPATH:+:$PYTHONPATH}" \
exec "$PYTHON" -m torch.distributed.run \
    --nnodes="$NNODES" \
    --node_rank="$NODE_RANK" \
    --master_addr="$MASTER_ADDR" \
    --master_port="$PORT" \
    --nproc_per_node="$NPROC" \
    "$TOOLS_DIR/train.py" "$CONFIG" --launcher pytorch "$@"
