#!/usr/bin/env bash
# Shared by slurm_train.sh and slurm_test.sh: runs a tool in GPUS processes
# through srun (the callers pass --launcher slurm).
#
#   tools/_srun.sh PARTITION JOB_NAME TOOL [tool arguments ...]
#
# GPUS (default 8) processes in all, GPUS_PER_NODE (default 8) per node,
# CPUS_PER_TASK (default 5) cores each; SRUN_ARGS adds srun options (e.g.
# "--quotatype=auto"); PYTHON selects the interpreter (default: python).
set -euo pipefail

PARTITION=$1
JOB_NAME=$2
TOOL=$3
shift 3
GPUS=${GPUS:-8}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
TOOLS_DIR="$(cd "$(dirname "$0")" && pwd)"

# shellcheck disable=SC2086  # SRUN_ARGS holds several options
PYTHONPATH="$(dirname "$TOOLS_DIR")${PYTHONPATH:+:$PYTHONPATH}" \
exec srun -p "$PARTITION" \
    --job-name="$JOB_NAME" \
    --gres="gpu:$GPUS_PER_NODE" \
    --ntasks="$GPUS" \
    --ntasks-per-node="$GPUS_PER_NODE" \
    --cpus-per-task="$CPUS_PER_TASK" \
    --kill-on-bad-exit=1 \
    ${SRUN_ARGS:-} \
    "${PYTHON:-python}" -u "$TOOLS_DIR/$TOOL" "$@"
