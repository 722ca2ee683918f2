#!/usr/bin/env bash
# The main job on the shipped defaults: the MobileNet in ../shared/models, CIFAR-10 in
# ../shared/data. Installs the build dependencies, builds gmtool (release), then reports the
# model, evaluates it on the test split, takes dC/dw on the validation split, prunes it with the
# paper's rule, exports the pruned model as CSR and evaluates the sparse file.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
swift build -c release >/dev/null
gmtool=.build/release/gmtool
model=${MODEL:-../shared/models/mobilenet_0.50_cifar10.h5}
data=${DATA:-../shared/data/cifar10-jpeg}
out=${OUT_DIR:-demo-out}
mkdir -p "$out"

echo "== gmtool stats $model (totals)"
$gmtool stats "$model" | tail -8
echo
echo "== gmtool eval $model --data $data (test split)"
$gmtool eval "$model" --data "$data"
echo
echo "== gmtool grad $model --data $data --split validation -o $out/gradients.h5"
$gmtool grad "$model" --data "$data" --split validation -o "$out/gradients.h5"
echo
echo "== gmtool prune $model --beta 0.05 --gamma 0.001 --data $data --eval-data $data -o $out/pruned.h5"
$gmtool prune "$model" --beta 0.05 --gamma 0.001 --data "$data" --eval-data "$data" -o "$out/pruned.h5" | tail -6
echo
echo "== gmtool stats $out/pruned.h5 (totals)"
$gmtool stats "$out/pruned.h5" | grep -E "^(total|non-zero|sparsity|masks)"
echo
echo "== gmtool export --csr $out/pruned.h5 -o $out/pruned.csr.h5; gmtool eval on the sparse file"
$gmtool export --csr "$out/pruned.h5" -o "$out/pruned.csr.h5" 2>/dev/null | tail -3
$gmtool eval "$out/pruned.csr.h5" --data "$data" | grep -E "top-1|kernels|speed"
