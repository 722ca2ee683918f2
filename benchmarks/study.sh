#!/usr/bin/env bash
# The three-seed study in docs/RESULTS.md ("Matched sparsity, three seeds"): the reference MobileNet
# alpha 0.5 (../shared/models) fine-tuned with a SCALED recipe (5 epochs over data_batch_1 only),
# densely and at 80%, 90% and 95% with three pruning rules:
#   paper     the paper's rule |w| < beta and |dC/dw| < gamma (gamma 0.005), delta 2 (prunes after epochs 2 and 4)
#   magnitude the same schedule with gamma inf
#   gmp       --method gmp --final-sparsity S, begin 1, end 4, frequency 1 (tfmot's polynomial schedule)
# beta for paper/magnitude is chosen once per (S, gamma) with `gmtool prune --target-sparsity S --dry-run`
# on the starting model over the same 2,000 validation images the training run prunes with, so the
# sparsity after the first pruning step is S; the sparsity at the end is measured and reported.
# Usage: bash benchmarks/study.sh [SEED...]   (default seeds 1 2 3); GMTOOL=path overrides the binary;
# RULES="gmp" (any of paper magnitude gmp) runs only those rules beside the dense runs;
# MODEL=checkpoint OUT=folder study another starting model (docs/RESULTS.md's alpha 1.0 rows:
# MODEL=runs/scratch/dense.h5 OUT=runs/study-a1.0, the model benchmarks/scratch.sh trains).
# Each run takes about 40 s on the 2-core machine when it has it to itself; outputs go to runs/study/.
set -euo pipefail
cd "$(dirname "$0")/.."
gmtool=${GMTOOL:-.build/release/gmtool}
[ -n "${GMTOOL:-}" ] || swift build -c release >/dev/null
model=${MODEL:-../shared/models/mobilenet_0.50_cifar10.h5}
data=../shared/data/cifar10-jpeg
gamma=0.005
images=2000
seeds=("$@"); [ ${#seeds[@]} -gt 0 ] || seeds=(1 2 3)
common=(--train-data "$data/data_batch_1.bin" --val-data "$data/data_batch_5.bin" --epochs 5
        --optimizer sgd --lr 0.01 --nesterov --schedule cosine --quiet)
out=${OUT:-runs/study}; mkdir -p "$out"
rules=" ${RULES:-paper magnitude gmp} "
declare -A beta
[[ $rules == *" paper "* || $rules == *" magnitude "* ]] && for s in 0.8 0.9 0.95; do
  for g in $gamma inf; do
    f="$out/beta_${s}_$g.json"
    if [ "$g" = inf ]; then grad=(); else grad=(--data "$data/data_batch_5.bin" --limit $images); fi
    [ -s "$f" ] || $gmtool prune "$model" "${grad[@]}" --target-sparsity $s --gamma $g --dry-run --json > "$f"
    beta[$s,$g]=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["beta"])' "$f")
  done
done
run() { # name seed args...
  local name=$1 seed=$2; shift 2
  local f="$out/${name}_seed$seed.h5"
  if [ ! -f "$f" ]; then
    local t0=$SECONDS
    $gmtool train "$model" "${common[@]}" --seed "$seed" "$@" -o "$f" > "$f.out"
    echo "$((SECONDS - t0))" > "$f.seconds"
  fi
  $gmtool eval "$f" --data "$data" --json > "$f.eval.json"
  $gmtool stats "$f" --json > "$f.stats.json"
  echo "done $name seed $seed ($(cat "$f.seconds") s)"
}
for seed in "${seeds[@]}"; do
  run dense "$seed"
  for s in 0.8 0.9 0.95; do
    [[ $rules != *" paper "* ]] || run "paper_$s" "$seed" --delta 2 --prune-images $images --beta "${beta[$s,$gamma]}" --gamma $gamma
    [[ $rules != *" magnitude "* ]] || run "magnitude_$s" "$seed" --delta 2 --beta "${beta[$s,inf]}" --gamma inf
    [[ $rules != *" gmp "* ]] || run "gmp_$s" "$seed" --method gmp --final-sparsity $s --begin-epoch 1 --end-epoch 4 --frequency 1
  done
done
python3 - "$out" "${seeds[@]}" <<'PY'
import json, statistics, sys
out, seeds = sys.argv[1], sys.argv[2:]
def load(name, seed):
    f = f"{out}/{name}_seed{seed}.h5"
    try:
        return json.load(open(f + ".stats.json"))["sparsity"], json.load(open(f + ".eval.json"))["top1_accuracy"], int(open(f + ".seconds").read())
    except FileNotFoundError:
        return None
def ms(xs):
    return f"{100 * statistics.mean(xs):.2f} ± {100 * statistics.stdev(xs):.2f}" if len(xs) > 1 else f"{100 * xs[0]:.2f}"
dense = {s: load("dense", s) for s in seeds}
print("dense per seed: " + ", ".join(f"seed {s}: {100 * d[1]:.2f}%" for s, d in dense.items() if d))
print("| target | rule | seeds | sparsity % (mean ± sd) | test top-1 % (mean ± sd) | drop vs same-seed dense (points) | s/run |")
print("|---:|---|---:|---:|---:|---:|---:|")
for t in ("0.8", "0.9", "0.95"):
    for rule in ("paper", "magnitude", "gmp"):
        rs = [(s, load(f"{rule}_{t}", s)) for s in seeds]
        rs = [(s, r) for s, r in rs if r and dense[s]]
        if not rs: continue
        drops = [dense[s][1] - r[1] for s, r in rs]
        print(f"| {float(t):.0%} | {rule} | {len(rs)} | {ms([r[0] for _, r in rs])} | {ms([r[1] for _, r in rs])} | {ms(drops)} | {statistics.mean(r[2] for _, r in rs):.0f} |")
PY
