#!/usr/bin/env bash
# The cost of sharding: one `gmtool grad` over IMAGES test images of the reference model against
# the same pass as N shards run one after another on this machine (every shard on all cores, so no
# speed-up is expected here) plus `gmtool merge`, checked equal byte for byte. Prints the per-image
# cost, the overhead of sharding and merging, and the projected wall time on N machines
# (pass / N + one shard's fixed cost + the merge).
# Usage: bash benchmarks/shards.sh [IMAGES [N]]   (default 4000 images, 4 shards; release build)
set -euo pipefail
cd "$(dirname "$0")/.."
images=${1:-4000}
shards=${2:-4}
swift build -c release >/dev/null
bin=.build/release/gmtool
model=../shared/models/mobilenet_0.50_cifar10.h5
data=(--data ../shared/data/cifar10-jpeg --limit "$images" --quiet)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
now() { date +%s.%N; }
seconds() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }

start=$(now); "$bin" grad "$model" "${data[@]}" -o "$work/single.h5" >/dev/null; single=$(seconds "$start" "$(now)")
total=0
shard_times=()
for ((k = 0; k < shards; k++)); do
  start=$(now); "$bin" grad "$model" "${data[@]}" --shard "$k/$shards" -o "$work/shard-$k.h5" >/dev/null
  t=$(seconds "$start" "$(now)"); shard_times+=("$t"); total=$(awk -v a="$total" -v b="$t" 'BEGIN { print a + b }')
done
start=$(now); "$bin" merge "$work"/shard-*.h5 -o "$work/merged.h5" >/dev/null; merge=$(seconds "$start" "$(now)")
cmp -s "$work/single.h5" "$work/merged.h5" && same="identical" || same="DIFFERENT"
shard_bytes=$(du -cb "$work"/shard-*.h5 | tail -1 | cut -f1)
awk -v n="$images" -v N="$shards" -v single="$single" -v total="$total" -v merge="$merge" -v same="$same" \
    -v shard_list="${shard_times[*]}" -v bytes="$shard_bytes" -v grads="$(stat -c %s "$work/single.h5")" 'BEGIN {
  per = single / n
  fixed = (total - single) / N          # what a shard costs beyond its share of the pass
  printf "gmtool grad, reference model, %d CIFAR-10 test images, batch 100, %d shards (%s)\n", n, N, strftime("%Y-%m-%d %H:%M")
  printf "  single run:            %7.2f s  (%.2f ms per image)\n", single, 1000 * per
  printf "  %d shards, one by one:  %7.2f s  (%s s)\n", N, total, shard_list
  printf "  merge:                 %7.2f s  (merged file %s to the single run)\n", merge, same
  printf "  overhead:              %7.2f s  = %.1f%% of the pass (shards + merge - single)\n", total + merge - single, 100 * (total + merge - single) / single
  printf "  shard files:           %7.1f MB in all (the gradient file: %.1f MB)\n", bytes / 1e6, grads / 1e6
  printf "  projected on N machines (pass / N + %.2f s per shard + merge):\n", fixed
  split("2 4 8 16 32", machines, " ")
  for (i = 1; i <= 5; i++) { m = machines[i]; printf "    N = %2d: %7.2f s\n", m, single / m + fixed + merge }
  printf "  the same per-image cost for 50,000 images: %.0f s on one machine\n", 50000 * per
}'
[ "$same" = identical ]
