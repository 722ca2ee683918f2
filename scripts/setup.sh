#!/usr/bin/env bash
# Installs what gmtool needs to build and test (Debian packages; slurm-wlm and munge for the
# single-node Slurm test, scripts/slurm-test.sh) and, with --python, the Python
# environment used only for fixtures and interop tests (.venv, never by the tool itself).
set -euo pipefail
cd "$(dirname "$0")/.."

# chromium: the browser test of the charts (Tests/interop/test_charts_browser.py), never used by gmtool;
# slurm-wlm and munge: the single-node Slurm test (scripts/slurm-test.sh); libpng and libjpeg-turbo decode image folders.
packages=(libhdf5-dev zlib1g-dev libopenblas-dev pkg-config libpng-dev libjpeg62-turbo-dev chromium slurm-wlm munge)
missing=()
for p in "${packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ "${1:-}" = "--python" ]; then
  if [ ! -x .venv/bin/python ]; then python3 -m venv .venv; fi
  if ! .venv/bin/python -c 'import tensorflow, tf_keras, h5py, scipy, pytest, PIL' 2>/dev/null; then
    echo "setup: installing the Python interop environment (.venv)"
    .venv/bin/pip install -q --disable-pip-version-check -r Tests/interop/requirements.txt
  fi
fi
