#!/usr/bin/env bash
# The reproduction in docs/RESULTS.md: the reference MobileNet (alpha 0.5, trained 30 epochs by
# Keras, ../shared/models) trained 15 more epochs by gmtool, densely and with the paper's pruning
# schedule at several (beta, gamma), delta 1; then test accuracy and sparsity of every result.
# Usage: bash benchmarks/reproduce.sh [RUN...]   (runs: dense paper_a paper_b high_a high_b grad_mid magnitude magnitude_hi)
# Each run takes about 3 minutes on the 2-core machine; outputs go to runs/ (ignored by git).
set -euo pipefail
cd "$(dirname "$0")/.."
swift build -c release >/dev/null
gmtool=.build/release/gmtool
model=../shared/models/mobilenet_0.50_cifar10.h5
data=../shared/data/cifar10-jpeg
common=(--data "$data" --epochs 15 --optimizer sgd --lr 0.01 --nesterov --schedule cosine --seed 7 --delta 1 --quiet)
declare -A settings=(
  [dense]=""
  [paper_a]="--beta 0.05 --gamma 0.001"
  [paper_b]="--beta 0.05 --gamma 0.05"
  [high_a]="--beta 0.25 --gamma 0.001"
  [high_b]="--beta 0.12 --gamma 0.05"
  [grad_mid]="--beta 0.16 --gamma 0.001"
  [magnitude]="--beta 0.12 --gamma inf"
  [magnitude_hi]="--beta 0.147 --gamma inf"
)
runs=("$@")
[ ${#runs[@]} -gt 0 ] || runs=(dense paper_a paper_b high_a high_b grad_mid magnitude magnitude_hi)
mkdir -p runs
for run in "${runs[@]}"; do
  # shellcheck disable=SC2086
  [ -f "runs/$run.h5" ] || $gmtool train "$model" "${common[@]}" ${settings[$run]} -o "runs/$run.h5" > "runs/$run.out"
done
printf '%-10s %-28s %9s %9s %10s %9s\n' run settings sparsity val_top1 test_top1 test_loss
for run in "${runs[@]}"; do
  test=$($gmtool eval "runs/$run.h5" --data "$data" --json)
  stats=$($gmtool stats "runs/$run.h5" --json)
  python3 - "$run" "${settings[$run]:-dense}" "runs/$run.h5.log.json" <<PY "$test" "$stats"
import json, sys
run, setting, log = sys.argv[1], sys.argv[2], json.load(open(sys.argv[3]))
test, stats = json.loads(sys.argv[4]), json.loads(sys.argv[5])
print(f"{run:<10} {setting:<28} {stats['sparsity']:>9.4f} {log[-1]['validation_accuracy']:>9.4f} {test['top1_accuracy']:>10.4f} {test['mean_loss']:>9.4f}")
PY
done
