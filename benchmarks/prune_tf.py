#!/usr/bin/env python3
"""What a user scripts today for `gmtool prune`: TensorFlow for dC/dw over the validation images,
NumPy for the rule, h5py to write the pruned checkpoint with masks. Timed as a whole process by
benchmarks/bench.py next to `gmtool prune`.

usage: prune_tf.py MODEL.h5 DATA.bin OUT.h5 BETA GAMMA
"""
import os
import shutil
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import h5py  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

model_path, data_path, out_path, beta, gamma = sys.argv[1], sys.argv[2], sys.argv[3], np.float32(sys.argv[4]), np.float32(sys.argv[5])
tf.config.threading.set_intra_op_parallelism_threads(2)
tf.config.threading.set_inter_op_parallelism_threads(2)
model = tf.keras.models.load_model(model_path, compile=False)
raw = np.fromfile(data_path, dtype=np.uint8).reshape(-1, 3073)
labels = raw[:, 0].astype(np.int64)
images = raw[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).astype(np.float32) / 255.0


@tf.function
def step(x, y):
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.keras.losses.sparse_categorical_crossentropy(y, model(x, training=False)))
    return tape.gradient(loss, model.trainable_weights)


sums = [np.zeros(w.shape, np.float32) for w in model.trainable_weights]
for i in range(0, len(labels), 100):
    for s, g in zip(sums, step(images[i:i + 100], labels[i:i + 100])):
        s += g.numpy()
grads = {w.name: s / len(labels) for w, s in zip(model.trainable_weights, sums)}

shutil.copy(model_path, out_path)
pruned = 0
with h5py.File(out_path, "r+") as f:
    masks = f.require_group("gmtool_masks")
    for layer in model.layers:
        if layer.__class__.__name__ not in ("Conv2D", "DepthwiseConv2D", "Dense"):
            continue
        kernel = layer.depthwise_kernel if hasattr(layer, "depthwise_kernel") else layer.kernel
        path = f"/model_weights/{layer.name}/{kernel.name}"
        w = f[path][()]
        keep = ~((np.abs(w) < beta) & (np.abs(grads[kernel.name]) < gamma))
        pruned += int(keep.size - np.count_nonzero(keep))
        f[path][...] = w * keep
        masks.create_dataset(path.lstrip("/"), data=keep.astype(np.uint8), compression="gzip")
print(pruned)
