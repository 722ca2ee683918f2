#!/usr/bin/env bash
# The cost of sharding: one `gmtool grad` over IMAGES test images of the reference model against
# the same pass as N shards run one after another on this machine (every shard on all cores, so no
# speed-up is expected here) plus `gmtool merge`, checked equal byte for byte. Prints the per-image
# cost, the overhead of sharding and merging, and the projected wall time on N machines
# (pass / N + one shard's fixed cost + the merge).
# Usage: bash benchmarks/shards.sh [IMAGES [N [SPLIT]]]   (default: 4000 test images, 4 shards;
# SPLIT train has 40,000 images; release build)
# Environment: REPEAT=R runs the whole comparison R times, interleaved, and reports each
# command's fastest run (wall and CPU each; the machine is shared, the minimum is the least
# disturbed); MODEL=FILE and DATA="--data ..." replace the reference model and CIFAR-10 (e.g. the
# 224x224 case of benchmarks/make_large_input.py), BATCH=B the batch size (default 100).
set -euo pipefail
cd "$(dirname "$0")/.."
images=${1:-4000}
shards=${2:-4}
split=${3:-test}
repeat=${REPEAT:-1}
swift build -c release >/dev/null
bin=.build/release/gmtool
model=${MODEL:-../shared/models/mobilenet_0.50_cifar10.h5}
# shellcheck disable=SC2206
data=(${DATA:---data ../shared/data/cifar10-jpeg --split $split} --limit "$images" --batch-size "${BATCH:-100}" --quiet)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# Wall and CPU (user + system) seconds of one command; CPU time is less disturbed by other jobs
# on a shared machine than wall time.
timed() { /usr/bin/time -f "%e %U %S" -o "$work/time" "$@" >/dev/null; awk '{ printf "%s %.2f", $1, $2 + $3 }' "$work/time"; }
add() { awk -v a="$1" -v b="$2" 'BEGIN { print a + b }'; }
least() { awk -v a="$1" -v b="$2" 'BEGIN { print (a == "" || b < a) ? b : a }'; }

single="" single_cpu="" merge="" merge_cpu="" shard_times=() shard_cpus=()
same="identical"
for ((r = 0; r < repeat; r++)); do
  read -r t c <<<"$(timed "$bin" grad "$model" "${data[@]}" -o "$work/single.h5")"
  single=$(least "$single" "$t"); single_cpu=$(least "$single_cpu" "$c")
  for ((k = 0; k < shards; k++)); do
    read -r t c <<<"$(timed "$bin" grad "$model" "${data[@]}" --shard "$k/$shards" -o "$work/shard-$k.h5")"
    shard_times[k]=$(least "${shard_times[k]:-}" "$t"); shard_cpus[k]=$(least "${shard_cpus[k]:-}" "$c")
  done
  read -r t c <<<"$(timed "$bin" merge "$work"/shard-*.h5 -o "$work/merged.h5")"
  merge=$(least "$merge" "$t"); merge_cpu=$(least "$merge_cpu" "$c")
  cmp -s "$work/single.h5" "$work/merged.h5" || same="DIFFERENT"
done
total=0 total_cpu=0
for ((k = 0; k < shards; k++)); do total=$(add "$total" "${shard_times[k]}"); total_cpu=$(add "$total_cpu" "${shard_cpus[k]}"); done
shard_bytes=$(du -cb "$work"/shard-*.h5 | tail -1 | cut -f1)
awk -v n="$images" -v N="$shards" -v single="$single" -v total="$total" -v merge="$merge" -v same="$same" \
    -v single_cpu="$single_cpu" -v total_cpu="$total_cpu" -v merge_cpu="$merge_cpu" \
    -v part="${DATA:-CIFAR-10 $split split}" -v shard_list="${shard_times[*]}" -v repeat="$repeat" -v model="$model" -v bytes="$shard_bytes" -v grads="$(stat -c %s "$work/single.h5")" 'BEGIN {
  per = single / n
  fixed = (total - single) / N          # what a shard costs beyond its share of the pass
  printf "gmtool grad, %s, %d images (%s), %d shards, fastest of %d run(s) each (%s)\n", model, n, part, N, repeat, strftime("%Y-%m-%d %H:%M")
  printf "                           wall     CPU (user + system)\n"
  printf "  single run:            %7.2f s  %7.2f s  (%.2f ms per image, wall)\n", single, single_cpu, 1000 * per
  printf "  %d shards, one by one:  %7.2f s  %7.2f s  (wall: %s s)\n", N, total, total_cpu, shard_list
  printf "  merge:                 %7.2f s  %7.2f s  (merged file %s to the single run)\n", merge, merge_cpu, same
  printf "  overhead:              %7.2f s  %7.2f s  = %.1f%% (wall), %.1f%% (CPU) of the pass (shards + merge - single)\n", total + merge - single, total_cpu + merge_cpu - single_cpu, 100 * (total + merge - single) / single, 100 * (total_cpu + merge_cpu - single_cpu) / single_cpu
  printf "  shard files:           %7.1f MB in all (the gradient file: %.1f MB)\n", bytes / 1e6, grads / 1e6
  printf "  projected on N machines (pass / N + %.2f s per shard + merge):\n", fixed
  split("2 4 8 16 32", machines, " ")
  for (i = 1; i <= 5; i++) { m = machines[i]; printf "    N = %2d: %7.2f s\n", m, single / m + fixed + merge }
  printf "  the same per-image cost for 50,000 images: %.0f s on one machine\n", 50000 * per
}'
[ "$same" = identical ]
