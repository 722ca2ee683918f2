#!/usr/bin/env bash
# Runs every example command of README.md and docs/CLI.md (the `$ ` lines of their code blocks,
# with `\` continuation lines) from the repository root, and fails if any fails. Two changes
# keep it quick and independent of how gmtool was built: `.build/release/gmtool` is the binary
# given as $1 (default: the debug build), and a command that reads --data gets --limit 200.
# Usage: bash scripts/check-examples.sh [path/to/gmtool]
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-.build/debug/gmtool}
[ -x "$bin" ] || { echo "check-examples: $bin is not an executable gmtool" >&2; exit 1; }
created=()
for folder in demo-out; do [ -e "$folder" ] || created+=("$folder"); done
cleanup() { for folder in "${created[@]}"; do rm -rf "$folder"; done; }
trap cleanup EXIT

extract() {
  awk '
    /^```/ { inblock = !inblock; next }
    inblock && /^\$ / { command = substr($0, 3); continued = (command ~ /\\$/) ; if (!continued) { print command; command = "" }; next }
    inblock && continued { command = substr(command, 1, length(command) - 1) " " $0; sub(/^ +/, " ", command)
                           continued = (command ~ /\\$/); if (!continued) { print command; command = "" } }
  ' "$1"
}

count=0 failed=0
for doc in README.md docs/CLI.md; do
  while IFS= read -r command; do
    run=${command//.build\/release\/gmtool/$bin}
    if [[ $run == *"--data "* && $run != *"--limit"* ]]; then
      run=$(sed -E 's#(gmtool (stats|eval|grad|prune|sweep|sensitivity|export|import|train))#\1 --limit 200#' <<<"$run")
    fi
    count=$((count + 1))
    if ! out=$(bash -o pipefail -c "$run" 2>&1); then
      failed=$((failed + 1))
      echo "FAILED ($doc): $command" >&2
      echo "$out" | tail -5 | sed 's/^/    /' >&2
    fi
  done < <(extract "$doc")
done
echo "check-examples: $count example commands, $failed failed"
[ "$count" -gt 0 ] && [ "$failed" -eq 0 ]
