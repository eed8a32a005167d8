#!/usr/bin/env bash
# Training on a Slurm cluster, one process per GPU, through srun and
# MMEngine's slurm launcher (the OpenMMLab convention).
#
#   tools/slurm_train.sh PARTITION JOB_NAME CONFIG WORK_DIR [train.py arguments ...]
#
# GPUS (default 8), GPUS_PER_NODE (default 8), CPUS_PER_TASK (default 5),
# SRUN_ARGS and PYTHON: see _srun.sh.
set -euo pipefail

if [ "$#" -lt 4 ]; then
    echo "usage: $0 PARTITION JOB_NAME CONFIG WORK_DIR [train.py arguments ...]" >&2
    exit 2
fi
PARTITION=$1
JOB_NAME=$2
CONFIG=$3
WORK_DIR=$4
shift 4
exec "$(dirname "$0")/_srun.sh" "$PARTITION" "$JOB_NAME" train.py "$CONFIG" \
    --work-dir="$WORK_DIR" --launcher slurm "$@"
