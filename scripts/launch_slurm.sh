#!/usr/bin/env bash
# Submit jepa-train as a SLURM job over several GPU nodes: sbatch allocates the nodes, srun
# starts the processes — one per node (driving all its GPUs) or one per GPU.
#
# Usage:
#   scripts/launch_slurm.sh [options] -- JEPA_TRAIN_ARGS...
#
# Options:
#   --nodes N            nodes (default 2)
#   --gpus-per-node G    GPUs per node (default 8)
#   --per-gpu            one process per GPU (N*G processes) instead of one per node
#   --partition P        SLURM partition (default: the cluster's default)
#   --time T             time limit, e.g. 24:00:00 (default: the partition's)
#   --job-name NAME      (default jepa)
#   --dry-run            print the batch script instead of submitting it
# Environment: VENV (default: .venv of this checkout) holds jepa and jax[cuda12]; SBATCH_ARGS,
# extra sbatch arguments (e.g. "--account=abc --qos=high").
#
# Inside the job step every process finds the coordinator (the first node), the process count
# and its id from SLURM's variables (jax.distributed.initialize's SLURM detection), so
# jepa-train needs no multi-host flags. The job runs in this checkout (relative paths in
# JEPA_TRAIN_ARGS are relative to it). This checkout, --workdir and
# --config.data.data_dir must be on a file system all nodes share; each process reads only
# its own records of the data. Process 0 writes metrics, plots and the progress bar; the job
# log is slurm-JOBID.out in the directory sbatch ran from.
#
# Example: I-JEPA ViT-L/16 on ImageNet, 4 nodes of 8 GPUs, one process per node:
#   scripts/launch_slurm.sh --nodes 4 --gpus-per-node 8 --partition gpu --time 48:00:00 -- \
#     --config experiments/ijepa_in1k.py:variant=L/16 \
#     --workdir /shared/runs/in1k_l16 --config.data.data_dir=/shared/tensorflow_datasets
# Submitting the same command again resumes from the latest checkpoint in --workdir.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$(pwd)"

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
  exit "${1:-0}"
}

NODES=2
GPUS=8
PER_GPU=0
PARTITION=""
TIME=""
JOB_NAME=jepa
DRY_RUN=0
while [ $# -gt 0 ]; do
  case "$1" in
    --nodes) NODES="$2"; shift 2 ;;
    --gpus-per-node) GPUS="$2"; shift 2 ;;
    --per-gpu) PER_GPU=1; shift ;;
    --partition) PARTITION="$2"; shift 2 ;;
    --time) TIME="$2"; shift 2 ;;
    --job-name) JOB_NAME="$2"; shift 2 ;;
    --dry-run) DRY_RUN=1; shift ;;
    -h | --help) usage 0 ;;
    --) shift; break ;;
    *) echo "launch_slurm.sh: unknown option $1 (jepa-train arguments go after --)" >&2; usage 2 ;;
  esac
done
[ $# -gt 0 ] || { echo "launch_slurm.sh: no jepa-train arguments after --" >&2; exit 2; }
VENV="${VENV:-$ROOT/.venv}"

# Every task sees all GPUs of its node (--gpus-per-node); which ones a process drives is
# JAX's choice from SLURM_LOCALID (one process per GPU: GPU number SLURM_LOCALID), unless
# JAX_LOCAL_DEVICE_IDS names them (one process per node: all of them).
if [ "$PER_GPU" = 1 ]; then
  TASKS_PER_NODE="$GPUS"
  DEVICE_IDS=""
else
  TASKS_PER_NODE=1
  DEVICE_IDS="export JAX_LOCAL_DEVICE_IDS=$(seq -s, 0 $((GPUS - 1)))"
fi

SCRIPT="#!/usr/bin/env bash
#SBATCH --job-name=$JOB_NAME
#SBATCH --nodes=$NODES
#SBATCH --ntasks-per-node=$TASKS_PER_NODE
#SBATCH --gpus-per-node=$GPUS
#SBATCH --output=slurm-%j.out
${PARTITION:+#SBATCH --partition=$PARTITION}
${TIME:+#SBATCH --time=$TIME}
set -euo pipefail
cd $(printf %q "$ROOT")
export TF_CPP_MIN_LOG_LEVEL=2
$DEVICE_IDS
# On the allocation's first node; srun starts the $((NODES * TASKS_PER_NODE)) processes.
srun --kill-on-bad-exit=1 $(printf %q "$VENV")/bin/jepa-train $(printf '%q ' "$@")"

if [ "$DRY_RUN" = 1 ]; then
  echo "$SCRIPT"
else
  # shellcheck disable=SC2086  # SBATCH_ARGS is a list of arguments
  echo "$SCRIPT" | sbatch ${SBATCH_ARGS:-}
fi
