#!/usr/bin/env bash
# The whole test suite: Swift unit, golden and CLI tests, then the Python interop tests that check
# gmtool's output files with real Keras, then every example command of README.md and docs/CLI.md
# (scripts/check-examples.sh), then the sharded gradient pass on a real single-node Slurm
# (scripts/slurm-test.sh). Installs what it needs first (scripts/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --python

swift build --build-tests
interop_dir=$(mktemp -d)
trap 'rm -rf "$interop_dir"' EXIT
# The Swift tests write their round-trip outputs here for the Keras interop tests to load.
GMTOOL_INTEROP_OUT="$interop_dir" swift test --skip-build 2>&1 | tee "$interop_dir/swift-test.log"
GMTOOL_INTEROP_OUT="$interop_dir" GMTOOL_BIN="$(swift build --show-bin-path)/gmtool" \
  .venv/bin/python -m pytest -q Tests/interop
bash scripts/check-examples.sh "$(swift build --show-bin-path)/gmtool"
# A real single-node Slurm runs the examples/slurm array job and merge (SKIP only where Slurm cannot start).
bash scripts/slurm-test.sh "$(swift build --show-bin-path)/gmtool"
