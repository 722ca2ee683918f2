#!/usr/bin/env bash
# A real single-node Slurm on localhost: starts munged, slurmctld and slurmd from Debian's
# packages with a generated slurm.conf in a temporary folder (loopback only, ports of its own),
# runs examples/slurm/submit.sh (an array job of 4 `gmtool grad --shard` tasks and a merge job
# chained with --dependency=afterok) on 130 images of the reference model, and checks that the
# merged file equals a single `gmtool grad` run byte for byte. Prints "SKIP: ..." and exits 0
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
  for log in "$work"/*.log "$work"/out/*.log; do [ -f "$log" ] && { echo "--- $log" >&2; tail -20 "$log" >&2; }; done
  exit 1
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
echo "slurm-test: slurmctld and slurmd up on $node (ports $port-$((port + 1)))"

# The reference: one plain run.
"$gmtool" grad "$model" --data "$data" $args --quiet -o "$work/single.h5" >/dev/null || fail "the single gmtool grad run failed"

# The example scripts, as a user submits them (the jobs inherit this environment).
cd "$work/out"
ids=$(GMTOOL="$gmtool" MODEL="$model" DATA="$data" OUT="$work/out" GMTOOL_ARGS="$args" SHARDS=4 \
  timeout 30 bash "$repo/examples/slurm/submit.sh") || fail "submit.sh failed"
read -r array merge <<<"$ids"
echo "slurm-test: array job $array (4 shards), merge job $merge (afterok)"
finished=""
for _ in $(seq 600); do
  state=$(timeout 5 scontrol show job "$merge" 2>/dev/null | grep -o 'JobState=[A-Z_]*' | cut -d= -f2 || true)
  case "$state" in
    COMPLETED) finished=yes; break;;
    FAILED|CANCELLED|TIMEOUT|NODE_FAIL|OUT_OF_MEMORY|BOOT_FAIL|DEADLINE) fail "merge job ended $state";;
  esac
  if timeout 5 scontrol show job "$merge" 2>/dev/null | grep -q 'Reason=DependencyNeverSatisfied'; then fail "a shard task failed"; fi
  sleep 0.5
done
[ -n "$finished" ] || fail "the jobs did not finish in 300 s (merge job state: ${state:-unknown})"
for k in 0 1 2 3; do
  timeout 5 scontrol show job "${array}_$k" | grep -q 'JobState=COMPLETED' || fail "array task $k did not complete"
done
cmp "$work/single.h5" "$work/out/grads.h5" || fail "the merged file differs from the single run"
echo "slurm-test: PASS: 4 Slurm array tasks + merge job (afterok) = the single run, byte for byte"
