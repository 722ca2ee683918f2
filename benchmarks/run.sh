#!/usr/bin/env bash
# Builds gmtool (release), prepares the peers' environment (.venv-peers: TensorFlow 2.15 CPU,
# h5py, SciPy, NumPy < 2, and PyTorch when --torch is given) and runs benchmarks/bench.py.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
swift build -c release >/dev/null
torch=0
args=()
for a in "$@"; do if [ "$a" = "--torch" ]; then torch=1; else args+=("$a"); fi; done
if [ ! -x .venv-peers/bin/python ]; then python3 -m venv .venv-peers; fi
.venv-peers/bin/python -c 'import tensorflow, h5py, scipy' 2>/dev/null || \
  .venv-peers/bin/pip install -q 'tensorflow-cpu==2.15.1' h5py scipy 'numpy<2'
if [ $torch = 1 ]; then .venv-peers/bin/python -c 'import torch' 2>/dev/null || .venv-peers/bin/pip install -q torch; fi
command -v /usr/bin/time >/dev/null || { export DEBIAN_FRONTEND=noninteractive; apt-get install -y -qq time >/dev/null; }
exec .venv-peers/bin/python benchmarks/bench.py "${args[@]}"
