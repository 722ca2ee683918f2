#!/usr/bin/env python3
"""gmtool's one-shot per-kernel magnitude pruning (the step `train --method gmp` takes) against
tfmot's, on one Keras checkpoint and the CIFAR-10 test set.

For each sparsity S, tfmot side: `prune_low_magnitude` on the whole model with
`ConstantSparsity(S, begin_step=0, frequency=1)` (tfmot wraps the layers its prune_registry
lists; for MobileNet: every Conv2D kernel, the first conv and the conv_preds head included, and
no DepthwiseConv2D kernel, whose registry entry is empty), the step set to 0, each wrapper's
`conditional_mask_update()` and `weight_mask_op()` called once (what the first training batch
with `UpdatePruningStep` does, without the batch's weight update or BatchNorm statistics), then
`strip_pruning` and top-1 on the test file. Variants (NumPy, tfmot's `_update_mask` rule checked
against tfmot's own masks first): depthwise kernels pruned too; the first conv or the head left
dense.

gmtool side (with --gmtool BIN): `gmtool prune MODEL --target-sparsity S --per-layer --gamma inf`
with and without `--skip-depthwise`; its masks (/gmtool_masks) are compared kernel by kernel with
tfmot's, and its output is evaluated by Keras here. Then gmtool's GMP step itself: `gmtool train
--method gmp --begin-epoch 1 --end-epoch 1` for one epoch on a small file, against tfmot's step on
the weights the same run without pruning ends with (masks and every weight compared).

usage: tfmot_gmp_check.py MODEL.h5 TEST.bin [--sparsity S ...] [--gmtool BIN [--train-data FILE.bin]]
Needs tensorflow 2.15 (tf.keras, Keras 2) and tensorflow-model-optimization 0.7.5.
"""
import argparse
import os
import subprocess
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import h5py  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_model_optimization as tfmot  # noqa: E402
from tensorflow_model_optimization.python.core.sparsity.keras import prune_registry, pruning_wrapper  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("model")
p.add_argument("test")
p.add_argument("--sparsity", type=float, nargs="+", default=[0.5, 0.55, 0.8])
p.add_argument("--gmtool")
p.add_argument("--train-data", default="../shared/data/cifar10-exact-subset/test_batch_first1000.bin",
               help="CIFAR-10 binary file for the one-epoch GMP step check (train and validation)")
args = p.parse_args()

tf.config.threading.set_intra_op_parallelism_threads(2)
tf.config.threading.set_inter_op_parallelism_threads(1)
raw = np.fromfile(args.test, dtype=np.uint8).reshape(-1, 3073)
labels = raw[:, 0].astype(np.int64)
images = raw[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).astype(np.float32) / 255.0
print(f"tensorflow {tf.__version__}, tfmot {tfmot.__version__}; {args.model}; {args.test}: {len(labels)} images")


def top1(model):
    logits = model.predict(images, batch_size=500, verbose=0)
    return float(np.mean(np.argmax(logits, axis=1) == labels))


def load(path=None):
    return tf.keras.models.load_model(path or args.model, compile=False)


def keep_mask(w, s):
    """tfmot's pruning_impl._update_mask: keep the k = max(round(n (1 - s)), 1) largest |w|
    (float32 arithmetic, round half to even), ties at the k-th kept, plus the k-th itself."""
    a = np.abs(w).reshape(-1)
    k = max(int(np.round(np.float32(a.size) * (np.float32(1) - np.float32(s)))), 1)
    order = np.argsort(-a, kind="stable")  # top_k order: larger first, lower index first on ties
    threshold = a[order[k - 1]]
    m = a >= threshold
    m[order[k - 1]] = True
    return m.reshape(w.shape)


base = load()
print(f"dense top-1 (Keras): {top1(base):.4f}")
registry = {}
for layer in base.layers:
    if prune_registry.PruneRegistry.supports(layer):
        names = prune_registry.PruneRegistry._weight_names(layer)
        if names:
            registry[layer.name] = names
kinds = sorted({type(base.get_layer(n)).__name__ + ":" + ",".join(v) for n, v in registry.items()})
dw = [l.name for l in base.layers if isinstance(l, tf.keras.layers.DepthwiseConv2D)]
print(f"tfmot prune_registry prunes {len(registry)} layers of this model ({'; '.join(kinds)}); "
      f"DepthwiseConv2D entry: {prune_registry.PruneRegistry._LAYERS_WEIGHTS_MAP[tf.keras.layers.DepthwiseConv2D]} "
      f"({len(dw)} depthwise layers left dense)")
first = next(l.name for l in base.layers if registry.get(l.name))
last = [l.name for l in base.layers if registry.get(l.name)][-1]


def tfmot_masks(s, path=None):
    """{weight path: keep mask} and top-1 of tfmot's own one-shot prune at sparsity s."""
    model = tfmot.sparsity.keras.prune_low_magnitude(
        load(path), pruning_schedule=tfmot.sparsity.keras.ConstantSparsity(s, begin_step=0, frequency=1))
    masks = {}
    for layer in model.layers:
        if isinstance(layer, pruning_wrapper.PruneLowMagnitude) and layer.pruning_vars:
            layer.pruning_step.assign(0)
            layer.pruning_obj.conditional_mask_update()
            layer.pruning_obj.weight_mask_op()
            for weight, mask, _ in layer.pruning_vars:
                masks[(layer.layer.name, weight.name.split("/")[-1].split(":")[0])] = mask.numpy() != 0
    stripped = tfmot.sparsity.keras.strip_pruning(model)
    return masks, (top1(stripped) if path is None else stripped)


def numpy_prune(masks_for):
    """Top-1 of the base model with kernels masked by `masks_for` {(layer, weight attr): keep}."""
    model = load()
    for (layer, attr), keep in masks_for.items():
        var = getattr(model.get_layer(layer), attr)
        var.assign(var.numpy() * keep)
    return top1(model)


def kernel_attr(layer):
    return "depthwise_kernel" if isinstance(layer, tf.keras.layers.DepthwiseConv2D) else "kernel"


def gmtool_masks(path):
    """{(layer, attr): keep} from gmtool's /gmtool_masks (paths mirror /model_weights)."""
    out = {}
    with h5py.File(path, "r") as f:
        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                parts = name.split("/")  # model_weights/<layer>/<layer>/<weight>:0
                out[(parts[1], parts[-1].split(":")[0])] = obj[()] != 0
        f["gmtool_masks"].visititems(visit)
    return out


def compare(name, ours, theirs):
    layers = sorted(set(ours) | set(theirs))
    only_ours = [k for k in layers if k in ours and k not in theirs]
    only_theirs = [k for k in layers if k in theirs and k not in ours]
    differ = [(k, int(np.sum(ours[k] != theirs[k])), ours[k].size) for k in layers if k in ours and k in theirs
              and not np.array_equal(ours[k], theirs[k])]
    print(f"  {name}: {len(ours)} kernels masked, tfmot {len(theirs)}; only {name}: {len(only_ours)}"
          f"{' (' + ', '.join(k[0] for k in only_ours[:3]) + (', ...' if len(only_ours) > 3 else '') + ')' if only_ours else ''}"
          f"; only tfmot: {len(only_theirs)}; common kernels whose masks differ: {len(differ)}")
    for k, n, size in differ[:5]:
        print(f"    {k[0]}/{k[1]}: {n} of {size} entries differ (pruned: {name} {int(np.sum(~ours[k]))}, tfmot {int(np.sum(~theirs[k]))})")


for s in args.sparsity:
    print(f"\nS = {s}")
    masks, acc = tfmot_masks(s)
    print(f"  tfmot prune_low_magnitude (registry layers: Conv2D/Dense kernels, no depthwise): top-1 {acc:.4f}")
    weights = {k: getattr(base.get_layer(k[0]), k[1]).numpy() for k in masks}
    emulated = {k: keep_mask(w, s) for k, w in weights.items()}
    same = all(np.array_equal(emulated[k], masks[k]) for k in masks)
    print(f"  NumPy emulation of tfmot's _update_mask equals tfmot's masks on all {len(masks)} kernels: {same}")
    pruned = sum(int(np.sum(~m)) for m in masks.values())
    print(f"  tfmot pruned {pruned} of {sum(m.size for m in masks.values())} kernel weights")
    with_dw = dict(emulated)
    for name in dw:
        layer = base.get_layer(name)
        with_dw[(name, "depthwise_kernel")] = keep_mask(layer.depthwise_kernel.numpy(), s)
    print(f"  same rule, depthwise kernels pruned too: top-1 {numpy_prune(with_dw):.4f}")
    print(f"  same rule, first conv ({first}) dense: top-1 {numpy_prune({k: v for k, v in emulated.items() if k[0] != first}):.4f}")
    print(f"  same rule, head ({last}) dense: top-1 {numpy_prune({k: v for k, v in emulated.items() if k[0] != last}):.4f}")
    print(f"  same rule, first conv and head dense: "
          f"top-1 {numpy_prune({k: v for k, v in emulated.items() if k[0] not in (first, last)}):.4f}")
    if args.gmtool:
        with tempfile.TemporaryDirectory() as tmp:
            for label, extra in (("gmtool", []), ("gmtool --skip-depthwise", ["--skip-depthwise"])):
                out = os.path.join(tmp, "out.h5")
                subprocess.run([args.gmtool, "prune", args.model, "--target-sparsity", str(s), "--per-layer", "--gamma", "inf",
                                *extra, "-o", out], check=True, stdout=subprocess.DEVNULL)
                ours = gmtool_masks(out)
                theirs = masks if extra else with_dw
                compare(label, ours, theirs if extra else with_dw)
                m = tf.keras.models.load_model(out, compile=False)
                print(f"  {label} output, Keras top-1: {top1(m):.4f}"
                      f" (compared with tfmot's rule {'on its registry layers' if extra else 'with depthwise kernels added'})")
                os.remove(out)

if args.gmtool:
    # gmtool's GMP step itself: `train --method gmp` with begin = end = 1 prunes once, to S, after
    # epoch 1. The same run dense (no pruning) holds the weights that step saw, so tfmot's own
    # mask update on the dense run's output must give the GMP run's masks, and the GMP run's
    # weights must be the dense run's times those masks, every other weight equal.
    small = args.train_data
    print(f"\ngmtool train --method gmp, one epoch on {small} (begin = end = 1), against tfmot's step on the same weights")
    with tempfile.TemporaryDirectory() as tmp:
        common = [args.gmtool, "train", args.model, "--train-data", small, "--val-data", small, "--epochs", "1", "--quiet"]
        dense = os.path.join(tmp, "dense.h5")
        subprocess.run(common + ["-o", dense], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for s in args.sparsity:
            out = os.path.join(tmp, "gmp.h5")
            subprocess.run(common + ["--method", "gmp", "--final-sparsity", str(s), "--begin-epoch", "1", "--end-epoch", "1", "-o", out],
                           check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            theirs, stripped = tfmot_masks(s, dense)
            ours = {k: v for k, v in gmtool_masks(out).items() if not np.all(v)}
            compare(f"gmtool gmp step at {s}", ours, theirs)
            gmp_model = load(out)
            same = all(np.array_equal(a, b) for a, b in zip(gmp_model.get_weights(), stripped.get_weights()))
            print(f"  every weight of the GMP run equals tfmot's pruned dense run: {same}")
            os.remove(out)
