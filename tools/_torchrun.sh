#!/usr/bin/env bash
# Shared by dist_train.sh and dist_test.sh: runs a tool in NUM_PROCESSES
# processes through torchrun (the callers pass --launcher pytorch).
#
#   tools/_torchrun.sh NUM_PROCESSES TOOL [tool arguments ...]
#
# NNODES, NODE_RANK, MASTER_ADDR and PORT (or MASTER_PORT) as for torchrun;
# PYTHON selects the interpreter (default: python).
set -euo pipefail

NPROC=$1
TOOL=$2
shift 2
TOOLS_DIR="$(cd "$(dirname "$0")" && pwd)"

PYTHONPATH="$(dirname "$TOOLS_DIR")${PYTHONPATH:+:$PYTHONPATH}" \
exec "${PYTHON:-python}" -m torch.distributed.run \
    --nnodes="${NNODES:-1}" \
    --node_rank="${NODE_RANK:-0}" \
    --master_addr="${MASTER_ADDR:-127.0.0.1}" \
    --master_port="${PORT:-${MASTER_PORT:-29500}}" \
    --nproc_per_node="$NPROC" \
    "$TOOLS_DIR/$TOOL" "$@"
