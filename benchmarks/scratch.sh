#!/usr/bin/env bash
# Training from random initialisation (docs/RESULTS.md, "MobileNet alpha 1.0"): a MobileNet alpha
# 1.0 freshly initialised by TensorFlow 2.15 (benchmarks/make_init_model.py, seed 1) trained by
# `gmtool train` with the reference checkpoint's recipe (../shared/models/train_reference.py:
# 30 epochs on data_batch_1-4, validation data_batch_5, SGD with Nesterov momentum 0.9, lr 0.05
# with cosine decay, batch 128, crop + flip):
#   dense  no pruning; the result is also the starting checkpoint of the alpha 1.0 study
#          (MODEL=runs/scratch/dense.h5 OUT=runs/study-a1.0 bash benchmarks/study.sh)
#   paper  the paper's rule during the whole training: beta chosen so that one step on the dense
#          result would reach 90% (`prune --target-sparsity 0.9 --gamma 0.005 --dry-run` over 2,000
#          validation images), gamma 0.005, delta 7 (prunes after epochs 7, 14, 21 and 28; epochs
#          29-30 recover), dC/dw over the first 2,000 validation images
# Usage: bash benchmarks/scratch.sh [dense] [paper]   (default both); GMTOOL=path overrides the binary.
# Each run takes about 11 minutes on the 2-core machine when it has it to itself; outputs in runs/scratch/.
set -euo pipefail
cd "$(dirname "$0")/.."
gmtool=${GMTOOL:-.build/release/gmtool}
[ -n "${GMTOOL:-}" ] || swift build -c release >/dev/null
data=../shared/data/cifar10-jpeg
out=runs/scratch; mkdir -p "$out"
py=${PEERS_PYTHON:-.venv-peers/bin/python}
[ -f "$out/init.h5" ] || TF_CPP_MIN_LOG_LEVEL=3 "$py" benchmarks/make_init_model.py 1.0 1 "$out/init.h5"
common=(--data "$data" --epochs 30 --optimizer sgd --lr 0.05 --nesterov --schedule cosine --seed 1 --quiet)
runs=("$@"); [ ${#runs[@]} -gt 0 ] || runs=(dense paper)
train() { # name args...
  local name=$1; shift
  local f="$out/$name.h5"
  if [ ! -f "$f.seconds" ]; then
    local t0=$SECONDS
    $gmtool train "$out/init.h5" "${common[@]}" "$@" -o "$f" > "$f.out"
    echo "$((SECONDS - t0))" > "$f.seconds"
  fi
  $gmtool eval "$f" --data "$data" --json > "$f.eval.json"
  $gmtool stats "$f" --json > "$f.stats.json"
  python3 -c 'import json,sys; e=json.load(open(sys.argv[1])); s=json.load(open(sys.argv[2]))
print(f"{sys.argv[3]}: test top-1 {100*e[\"top1_accuracy\"]:.2f}%, sparsity {100*s[\"sparsity\"]:.2f}%, {open(sys.argv[4]).read().strip()} s")' \
    "$f.eval.json" "$f.stats.json" "$name" "$f.seconds"
}
for run in "${runs[@]}"; do
  case $run in
    dense) train dense ;;
    paper)
      [ -f "$out/dense.h5.seconds" ] || { echo "scratch.sh: run dense first (paper's beta is chosen on its result)" >&2; exit 1; }
      [ -s "$out/beta_0.9.json" ] || $gmtool prune "$out/dense.h5" --data "$data/data_batch_5.bin" --limit 2000 \
        --target-sparsity 0.9 --gamma 0.005 --dry-run --json > "$out/beta_0.9.json"
      beta=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["beta"])' "$out/beta_0.9.json")
      train paper --beta "$beta" --gamma 0.005 --delta 7 --prune-images 2000 ;;
    *) echo "scratch.sh: unknown run $run (dense or paper)" >&2; exit 1 ;;
  esac
done
