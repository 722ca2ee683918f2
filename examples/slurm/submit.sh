#!/bin/bash
# Submits the shard array (N tasks) and the merge job chained after it; prints both job IDs.
# Usage: SHARDS=4 MODEL=model.h5 DATA=cifar-10-batches-bin OUT=shards examples/slurm/submit.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
shards=${SHARDS:-4}
array=$(sbatch --parsable --array="0-$((shards - 1))" "$here/grad-shards.sbatch")
merge=$(sbatch --parsable --dependency="afterok:${array%%;*}" "$here/merge.sbatch")
echo "$array $merge"
