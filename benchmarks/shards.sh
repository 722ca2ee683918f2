#!/usr/bin/env bash
# The cost of sharding: one `gmtool grad` over IMAGES test images of the reference model against
# the same pass as N shards run one after another on this machine (every shard on all cores, so no
# speed-up is expected here) plus `gmtool merge`, checked equal byte for byte. Prints the per-image
# cost, the overhead of sharding and merging, and the projected wall time on N machines
# (pass / N + one shard's fixed cost + the merge).
# Usage: bash benchmarks/shards.sh [IMAGES [N [SPLIT]]]   (default: 4000 test images, 4 shards;
# SPLIT train has 40,000 images; release build)
set -euo pipefail
cd "$(dirname "$0")/.."
images=${1:-4000}
shards=${2:-4}
split=${3:-test}
swift build -c release >/dev/null
bin=.build/release/gmtool
model=../shared/models/mobilenet_0.50_cifar10.h5
data=(--data ../shared/data/cifar10-jpeg --split "$split" --limit "$images" --quiet)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# Wall and CPU (user + system) seconds of one command; CPU time is less disturbed by other jobs
# on a shared machine than wall time.
timed() { /usr/bin/time -f "%e %U %S" -o "$work/time" "$@" >/dev/null; awk '{ printf "%s %.2f", $1, $2 + $3 }' "$work/time"; }
add() { awk -v a="$1" -v b="$2" 'BEGIN { print a + b }'; }

read -r single single_cpu <<<"$(timed "$bin" grad "$model" "${data[@]}" -o "$work/single.h5")"
total=0 total_cpu=0
shard_times=()
for ((k = 0; k < shards; k++)); do
  read -r t c <<<"$(timed "$bin" grad "$model" "${data[@]}" --shard "$k/$shards" -o "$work/shard-$k.h5")"
  shard_times+=("$t"); total=$(add "$total" "$t"); total_cpu=$(add "$total_cpu" "$c")
done
read -r merge merge_cpu <<<"$(timed "$bin" merge "$work"/shard-*.h5 -o "$work/merged.h5")"
cmp -s "$work/single.h5" "$work/merged.h5" && same="identical" || same="DIFFERENT"
shard_bytes=$(du -cb "$work"/shard-*.h5 | tail -1 | cut -f1)
awk -v n="$images" -v N="$shards" -v single="$single" -v total="$total" -v merge="$merge" -v same="$same" \
    -v single_cpu="$single_cpu" -v total_cpu="$total_cpu" -v merge_cpu="$merge_cpu" \
    -v part="$split" -v shard_list="${shard_times[*]}" -v bytes="$shard_bytes" -v grads="$(stat -c %s "$work/single.h5")" 'BEGIN {
  per = single / n
  fixed = (total - single) / N          # what a shard costs beyond its share of the pass
  printf "gmtool grad, reference model, %d CIFAR-10 %s images, batch 100, %d shards (%s)\n", n, part, N, strftime("%Y-%m-%d %H:%M")
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
