#!/usr/bin/env bash
# A real single-node Slurm on localhost: starts munged, slurmctld and slurmd from Debian's
# packages with a generated slurm.conf in a temporary folder (loopback only, ports of its own),
# runs, as a user submits them:
#   1. examples/slurm/submit.sh (an array job of 4 `gmtool grad --shard` tasks and a merge job
#      chained with --dependency=afterok) on 130 images of the reference model: the merged file
#      equals a single `gmtool grad` run byte for byte;
#   2. sweep-shards.sbatch (3 tasks) + sweep-merge.sbatch: the single sweep's folder (every file
#      byte for byte, sweep.json without its two timings);
#   3. train-chain.sbatch, `train --prune-gradients-from` with its 2 pruning passes as array
#      jobs plus merges: the checkpoint of one `gmtool train` that takes its own gradients
#      (scripts/same_training.py: every dataset's bytes, every attribute but the timings).
# Prints "SKIP: ..." and exits 0
# only when Slurm cannot be started here; every wait has a timeout; the daemons are stopped and
# the folder removed on any exit.
# Usage: scripts/slurm-test.sh [path/to/gmtool]
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
gmtool=$(realpath "${1:-$(swift build --show-bin-path)/gmtool}")
model=$(realpath ../shared/models/mobilenet_0.50_cifar10.h5)
data=$(realpath ../shared/data/cifar10-jpeg)
args="--limit 130 --batch-size 3"

skip() { echo "slurm-test: SKIP: $*"; exit 0; }
# Compares the trained checkpoints of part 3 (scripts/setup.sh --python makes it).
python=${PYTHON:-$repo/.venv/bin/python}
"$python" -c "import h5py, numpy" 2>/dev/null || { echo "slurm-test: FAIL: no Python with h5py at $python (scripts/setup.sh --python)" >&2; exit 1; }
for tool in munged munge slurmctld slurmd sbatch squeue scontrol sinfo; do
  command -v "$tool" >/dev/null || skip "$tool is not installed (Debian: slurm-wlm, munge)"
done

work=$(mktemp -d /tmp/gmtool-slurm.XXXXXX)
chmod 755 "$work"
pids=()
stop() {  # SIGTERM, up to 10 s to exit, then SIGKILL
  kill "$1" 2>/dev/null || return 0
  for _ in $(seq 100); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
  kill -9 "$1" 2>/dev/null || true
}
cleanup() {
  for pid in "${pids[@]}"; do stop "$pid"; done
  [ -f "$work/munged.pid" ] && stop "$(cat "$work/munged.pid")"
  cd /
  rm -rf "$work" 2>/dev/null || { sleep 1; rm -rf "$work"; }
}
trap cleanup EXIT
fail() {
  echo "slurm-test: FAIL: $*" >&2
  for log in "$work"/*.log "$work"/out/*.log "$work"/out/*/*.log; do [ -f "$log" ] && { echo "--- $log" >&2; tail -20 "$log" >&2; }; done
  exit 1
}
# Waits up to 300 s for job $1 to complete; fails, naming it as $2, when it ends otherwise.
wait_job() {
  local state=""
  for _ in $(seq 600); do
    state=$(timeout 5 scontrol show job "$1" 2>/dev/null | grep -o 'JobState=[A-Z_]*' | head -1 | cut -d= -f2 || true)
    case "$state" in
      COMPLETED) return 0;;
      FAILED|CANCELLED|TIMEOUT|NODE_FAIL|OUT_OF_MEMORY|BOOT_FAIL|DEADLINE) fail "$2 ended $state";;
    esac
    if timeout 5 scontrol show job "$1" 2>/dev/null | grep -q 'Reason=DependencyNeverSatisfied'; then fail "a job $2 waits for failed"; fi
    sleep 0.5
  done
  fail "$2 did not finish in 300 s (state: ${state:-unknown})"
}

# munge with a key and socket of its own.
dd if=/dev/urandom of="$work/munge.key" bs=1024 count=1 status=none
chmod 400 "$work/munge.key"
timeout 20 munged --socket="$work/munge.sock" --key-file="$work/munge.key" --pid-file="$work/munged.pid" \
  --log-file="$work/munged.log" --seed-file="$work/munge.seed" --force \
  || skip "munged does not start ($(tail -1 "$work/munged.log" 2>/dev/null))"
timeout 10 bash -c "munge -S '$work/munge.sock' -n | unmunge -S '$work/munge.sock' >/dev/null" || skip "munge does not answer"

# Ports of its own (two other runs of this script may be up at the same time).
port=$((20000 + RANDOM % 20000))
node=$(hostname -s)
hardware=$(slurmd -C | head -1 | sed -e 's/^NodeName=[^ ]* //' -e 's/RealMemory=[0-9]*/RealMemory=1000/')
mkdir -p "$work/state" "$work/spool" "$work/out"
cat > "$work/slurm.conf" <<CONF
ClusterName=gmtooltest
SlurmctldHost=$node(127.0.0.1)
SlurmctldPort=$port
SlurmdPort=$((port + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$work/munge.sock
CredType=cred/munge
StateSaveLocation=$work/state
SlurmdSpoolDir=$work/spool
SlurmctldPidFile=$work/slurmctld.pid
SlurmdPidFile=$work/slurmd.pid
SlurmctldLogFile=$work/slurmctld.log
SlurmdLogFile=$work/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/builtin
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
JobAcctGatherType=jobacct_gather/none
PlugStackConfig=$work/plugstack.conf
ReturnToService=2
MinJobAge=600
NodeName=$node NodeAddr=127.0.0.1 $hardware State=UNKNOWN
PartitionName=test Nodes=$node Default=YES MaxTime=30 State=UP
CONF
: > "$work/plugstack.conf"
export SLURM_CONF="$work/slurm.conf"
slurmctld -D -i -f "$SLURM_CONF" > "$work/slurmctld.out" 2>&1 & pids+=($!)
slurmd -D -f "$SLURM_CONF" -N "$node" > "$work/slurmd.out" 2>&1 & pids+=($!)
ready=""
for _ in $(seq 60); do
  state=$(timeout 5 sinfo -h -n "$node" -o %T 2>/dev/null || true)
  case "$state" in idle*) ready=yes; break;; esac
  for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null || skip "a Slurm daemon exited at start ($(tail -1 "$work/slurmctld.log" "$work/slurmd.log" 2>/dev/null | tr '\n' ' '))"; done
  sleep 0.5
done
[ -n "$ready" ] || skip "the node did not become idle in 30 s (state: ${state:-none}; $(tail -1 "$work/slurmd.log" 2>/dev/null))"
started=$SECONDS
echo "slurm-test: slurmctld and slurmd up on $node (ports $port-$((port + 1)))"

# The reference: one plain run.
"$gmtool" grad "$model" --data "$data" $args --quiet -o "$work/single.h5" >/dev/null || fail "the single gmtool grad run failed"

# The example scripts, as a user submits them (the jobs inherit this environment).
cd "$work/out"
ids=$(GMTOOL="$gmtool" MODEL="$model" DATA="$data" OUT="$work/out" GMTOOL_ARGS="$args" SHARDS=4 \
  timeout 30 bash "$repo/examples/slurm/submit.sh") || fail "submit.sh failed"
read -r array merge <<<"$ids"
echo "slurm-test: array job $array (4 shards), merge job $merge (afterok)"
wait_job "$merge" "the merge job"
for k in 0 1 2 3; do
  timeout 5 scontrol show job "${array}_$k" | grep -q 'JobState=COMPLETED' || fail "array task $k did not complete"
done
cmp "$work/single.h5" "$work/out/grads.h5" || fail "the merged file differs from the single run"
echo "slurm-test: PASS: 4 Slurm array tasks + merge job (afterok) = the single run, byte for byte ($((SECONDS - started)) s)"

# 2. A sweep's grid over an array of 3 tasks, 2 points each, and its merge.
grid=(--beta 0.02:0.1:3 --gamma 1e-3,inf)
sweep_args="--limit 64 --max-drop 100"
small=$(realpath "$repo/fixtures/mobilenet_k2.h5")
# shellcheck disable=SC2086
"$gmtool" sweep "$small" --data "$data" "${grid[@]}" $sweep_args --quiet -o "$work/single-sweep" >/dev/null || fail "the single gmtool sweep failed"
sweep_array=$(GMTOOL="$gmtool" MODEL="$small" DATA="$data" OUT="$work/out/sweep-shards" BETA=0.02:0.1:3 GAMMA=1e-3,inf \
  GMTOOL_ARGS="$sweep_args" timeout 30 sbatch --parsable --array=0-2 "$repo/examples/slurm/sweep-shards.sbatch") || fail "sbatch sweep-shards failed"
sweep_merge=$(GMTOOL="$gmtool" OUT="$work/out/sweep-shards" \
  timeout 30 sbatch --parsable --dependency="afterok:${sweep_array%%;*}" "$repo/examples/slurm/sweep-merge.sbatch") || fail "sbatch sweep-merge failed"
echo "slurm-test: sweep array job $sweep_array (3 shards), merge job $sweep_merge (afterok)"
wait_job "$sweep_merge" "the sweep merge job"
merged="$work/out/sweep-shards/sweep"
[ "$(ls "$work/single-sweep")" = "$(ls "$merged")" ] || fail "the merged sweep folder has other files than the single sweep's"
for file in "$work/single-sweep"/*; do
  name=$(basename "$file")
  if [ "$name" = sweep.json ]; then
    timings='"gradient_seconds"|"point_seconds"'
    cmp <(grep -Ev "$timings" "$file") <(grep -Ev "$timings" "$merged/$name") || fail "the merged sweep's $name differs from the single sweep's"
  else
    cmp "$file" "$merged/$name" || fail "the merged sweep's $name differs from the single sweep's"
  fi
done
echo "slurm-test: PASS: 3 Slurm sweep tasks + merge job = the single sweep's folder ($((SECONDS - started)) s)"

# 3. Training whose pruning passes are array jobs. 80 training images (20 from each of
# data_batch_1-4), 60 validation images (data_batch_5). A pruning pass (train's batch of 200)
# is one batch group, so its array has one task: more would need over 2,000 validation images,
# minutes for this debug build; part 1 already runs 4 shards of a pass.
tiny="$work/tiny"
mkdir -p "$tiny" "$work/out/train"
for i in 1 2 3 4; do head -c $((20 * 3073)) "$data/data_batch_$i.bin" > "$tiny/data_batch_$i.bin"; done
head -c $((60 * 3073)) "$data/data_batch_5.bin" > "$tiny/data_batch_5.bin"
small=$(realpath "$repo/fixtures/rescnn_k3.h5")
train_args="--epochs 2 --batch-size 16 --lr 0.05 --beta 0.05 --gamma 1 --delta 1 --prune-images 60"
# shellcheck disable=SC2086
"$gmtool" train "$small" --data "$tiny" $train_args --quiet -o "$work/straight.h5" >/dev/null 2>"$work/straight.log" || fail "the straight gmtool train failed"
cd "$work/out/train"
first=$(SLURM_EXAMPLES="$repo/examples/slurm" GMTOOL="$gmtool" MODEL="$small" DATA="$tiny" OUTPUT="$work/out/train/trained.h5" \
  GRADS="$work/out/train/grads" SHARDS=1 TRAIN_ARGS="$train_args" \
  timeout 30 sbatch --parsable "$repo/examples/slurm/train-chain.sbatch") || fail "sbatch train-chain failed"
echo "slurm-test: training chain started (job $first; $((SECONDS - started)) s)"
# The chain submits its own jobs: wait until the queue is empty, then every job must have completed.
idle=""
for _ in $(seq 1200); do
  sleep 0.5
  [ -z "$(timeout 5 squeue -h -o %i 2>/dev/null || echo busy)" ] && { idle=yes; break; }
  # A failed link's dependants would wait for ever.
  if timeout 5 scontrol show job 2>/dev/null | grep -q 'Reason=DependencyNeverSatisfied'; then fail "a job of the training chain failed"; fi
done
[ -n "$idle" ] || fail "the training chain did not finish in 600 s"
# Every job this script's Slurm ran (kept for MinJobAge), by name and state.
states=$(timeout 10 scontrol show job 2>/dev/null | grep -o 'JobName=[^ ]*\|JobState=[A-Z_]*' | paste -d' ' - - | sort | uniq -c | tr -s ' ' | tr '\n' ';')
echo "slurm-test: jobs run:$states"
links=$(tr ';' '\n' <<<"$states" | awk '$2 == "JobName=gmtool-train" && $3 == "JobState=COMPLETED" { print $1 }')
[ "$links" = 3 ] || fail "not 3 completed training links ($states)"
tr ';' '\n' <<<"$states" | grep -v 'JobState=COMPLETED' | grep -q . && fail "a job did not complete ($states)"
[ "$(ls "$work/out/train/grads" | grep -c '^grads-epoch-[0-9]*\.h5$')" = 2 ] || fail "the chain did not merge 2 pruning passes' gradient files"
"$python" "$repo/scripts/same_training.py" "$work/straight.h5" "$work/out/train/trained.h5" || fail "the chained training differs from the straight run"
echo "slurm-test: PASS: train-chain.sbatch (3 training links, 2 gradient arrays, 2 merges) = one gmtool train, bit for bit ($((SECONDS - started)) s)"
