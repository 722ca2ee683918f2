#!/usr/bin/env python3
"""What a user scripts today for `gmtool sweep`: TensorFlow for dC/dw over the gradient images
(one pass), then for every (beta, gamma) of the grid the rule in NumPy on the original kernels,
the masked kernels put in with `layer.set_weights`, and `model.evaluate` on the test images.
Timed as a whole process by benchmarks/bench.py (section sweep) next to `gmtool sweep`.

usage: sweep_tf.py MODEL.h5 GRAD.bin EVAL.bin N BETAS GAMMAS
  N: the first N images of each file; BETAS, GAMMAS: comma-separated (inf allowed).
Prints one JSON object: per point beta, gamma, top1, sparsity of the kernels; and the seconds.
"""
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

start = time.perf_counter()
model_path, grad_path, eval_path, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
betas = [np.float32(v) for v in sys.argv[5].split(",")]
gammas = [np.float32(v) for v in sys.argv[6].split(",")]
tf.config.threading.set_intra_op_parallelism_threads(2)
tf.config.threading.set_inter_op_parallelism_threads(2)


def cifar(path):
    raw = np.fromfile(path, dtype=np.uint8).reshape(-1, 3073)[:n]
    return raw[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).astype(np.float32) / 255.0, raw[:, 0].astype(np.int64)


x_grad, y_grad = cifar(grad_path)
x_eval, y_eval = cifar(eval_path)
model = tf.keras.models.load_model(model_path, compile=False)
model.compile(loss="sparse_categorical_crossentropy",
              metrics=["accuracy", tf.keras.metrics.SparseTopKCategoricalAccuracy(k=5)])


@tf.function
def step(x, y):
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.keras.losses.sparse_categorical_crossentropy(y, model(x, training=False)))
    return tape.gradient(loss, model.trainable_weights)


sums = [np.zeros(w.shape, np.float32) for w in model.trainable_weights]
for i in range(0, len(y_grad), 100):
    for s, g in zip(sums, step(x_grad[i:i + 100], y_grad[i:i + 100])):
        s += g.numpy()
gradient = {id(w): s / len(y_grad) for w, s in zip(model.trainable_weights, sums)}
gradient_seconds = time.perf_counter() - start

# The prunable kernels: (layer, index of the kernel in get_weights(), its gradient).
prunable = []
for layer in model.layers:
    if layer.__class__.__name__ not in ("Conv2D", "DepthwiseConv2D", "Dense", "SeparableConv2D"):
        continue
    kernel = layer.depthwise_kernel if hasattr(layer, "depthwise_kernel") else layer.kernel
    index = next(i for i, w in enumerate(layer.weights) if w is kernel)
    prunable.append((layer, index, gradient[id(kernel)]))
originals = {layer.name: layer.get_weights() for layer, _, _ in prunable}

points = []
for gamma in gammas:
    for beta in betas:
        zeros = total = 0
        for layer, index, g in prunable:
            weights = [w.copy() for w in originals[layer.name]]
            w = weights[index]
            w[(np.abs(w) < beta) & (np.abs(g) < gamma)] = 0
            zeros += int(w.size - np.count_nonzero(w))
            total += w.size
            layer.set_weights(weights)
        loss, top1, top5 = model.evaluate(x_eval, y_eval, batch_size=100, verbose=0)
        points.append({"beta": float(beta), "gamma": None if np.isinf(gamma) else float(gamma), "top1": float(top1),
                       "top5": float(top5), "loss": float(loss), "kernel_sparsity": zeros / total})
for layer, _, _ in prunable:
    layer.set_weights(originals[layer.name])
print(json.dumps({"points": points, "gradient_seconds": gradient_seconds, "seconds": time.perf_counter() - start}))
