#!/usr/bin/env bash
# Run jepa-train on every worker of a Cloud TPU VM pod slice (one process per worker VM, all
# its TPU chips), through `gcloud compute tpus tpu-vm ssh --worker=all`.
#
# Usage:
#   scripts/launch_tpu_pod.sh [--setup] TPU_NAME ZONE -- JEPA_TRAIN_ARGS...
#
#   --setup   first copy this checkout to every worker (into $REMOTE_DIR) and install it there
#             in a virtual environment with jax[tpu]; needed once per pod, and after changes.
#             Relative paths in JEPA_TRAIN_ARGS are relative to $REMOTE_DIR on the workers.
#
# Environment:
#   PROJECT      gcloud project (default: gcloud's configured one)
#   REMOTE_DIR   the checkout on the workers (default: jepa, i.e. ~/jepa)
#   PYTHON       python on the workers used to create the venv (default: python3)
#
# Every worker starts `jepa-train ... --distributed=on`: JAX finds the other workers and its
# own id through the TPU VM's metadata server. Process 0 writes metrics, plots and the
# progress bar; every process writes its part of each checkpoint, so --workdir must be shared
# by all workers (a gs:// bucket). Each worker reads only its own records of the data, so
# --config.data.data_dir must hold the prepared dataset on every worker (a gs:// bucket, or
# the same local copy on each).
#
# Example: I-JEPA ViT-B/16 on ImageNet on a v4-32 (4 workers):
#   scripts/launch_tpu_pod.sh --setup my-v4-32 us-central2-b -- \
#     --config experiments/ijepa_in1k.py:variant=B/16 \
#     --workdir gs://my-bucket/jepa/in1k_b16 \
#     --config.data.data_dir=gs://my-bucket/tensorflow_datasets
# Rerunning the same command (without --setup) resumes from the latest checkpoint. The run
# lives in the ssh sessions: keep the launching shell open (e.g. inside tmux). To stop it
# with a checkpoint, send SIGTERM to every worker's process (JAX's preemption service makes
# all of them save at one agreed step):
#   gcloud compute tpus tpu-vm ssh my-v4-32 --zone us-central2-b --worker=all \
#     --command 'pkill -TERM -f "bin/jepa-train"'
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
  exit "${1:-0}"
}

SETUP=0
if [ "${1:-}" = "--setup" ]; then
  SETUP=1
  shift
fi
case "${1:-}" in -h | --help | "") usage 0 ;; esac
[ $# -ge 3 ] && [ "$3" = "--" ] || usage 2
TPU_NAME="$1"
ZONE="$2"
shift 3
[ $# -gt 0 ] || { echo "launch_tpu_pod.sh: no jepa-train arguments after --" >&2; exit 2; }

REMOTE_DIR="${REMOTE_DIR:-jepa}"
PYTHON="${PYTHON:-python3}"
GCLOUD=(gcloud compute tpus tpu-vm)
WHERE=(--zone "$ZONE")
if [ -n "${PROJECT:-}" ]; then
  WHERE+=(--project "$PROJECT")
fi

on_all_workers() {
  "${GCLOUD[@]}" ssh "$TPU_NAME" "${WHERE[@]}" --worker=all --command "$1"
}

if [ "$SETUP" = 1 ]; then
  staging="$(mktemp -d)"
  trap 'rm -rf "$staging"' EXIT
  archive="$staging/jepa.tar.gz"
  # This checkout as it is: tracked and new files, without what .gitignore names (.venv, ...).
  git ls-files -z --cached --others --exclude-standard | tar --null -czf "$archive" -T -
  on_all_workers "rm -rf $(printf %q "$REMOTE_DIR") && mkdir -p $(printf %q "$REMOTE_DIR")"
  "${GCLOUD[@]}" scp "$archive" "$TPU_NAME:/tmp/jepa.tar.gz" "${WHERE[@]}" --worker=all
  on_all_workers "set -e; cd $(printf %q "$REMOTE_DIR") && tar -xzf /tmp/jepa.tar.gz && \
    { $(printf %q "$PYTHON") -m venv .venv || { sudo apt-get -qq update && \
      sudo apt-get -qq install -y python3-venv && $(printf %q "$PYTHON") -m venv .venv; }; } && \
    .venv/bin/pip install --quiet --upgrade pip && \
    .venv/bin/pip install --quiet -e . 'jax[tpu]'"
fi

# The same command on every worker; arguments quoted for the remote shell.
ARGS="$(printf '%q ' "$@")"
on_all_workers "cd $(printf %q "$REMOTE_DIR") && TF_CPP_MIN_LOG_LEVEL=2 \
  .venv/bin/jepa-train $ARGS --distributed=on"
