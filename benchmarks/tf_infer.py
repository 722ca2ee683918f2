#!/usr/bin/env python3
"""TensorFlow images/s on a checkpoint at a given batch size, best of 3 passes over the images
after one warm-up pass (tf.function, 2 threads, training=False):
  inference  the forward pass and its argmax;
  gradient   dC/dw of the mean cross-entropy per batch, accumulated into one variable per weight
             (what ../shared/bench/bench_peers.py times as its "TF grad pass").

usage: tf_infer.py MODEL.h5 DATA.bin BATCH N [inference|gradient]
"""
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

tf.config.threading.set_intra_op_parallelism_threads(2)
tf.config.threading.set_inter_op_parallelism_threads(2)
model_path, data, batch, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
kind = sys.argv[5] if len(sys.argv) > 5 else "inference"
raw = np.fromfile(data, dtype=np.uint8).reshape(-1, 3073)[:n]
x = raw[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).astype(np.float32) / 255.0
y = raw[:, 0].astype(np.int64)
model = tf.keras.models.load_model(model_path, compile=False)
weights = model.trainable_variables
sums = [tf.Variable(tf.zeros_like(v), trainable=False) for v in weights]
loss_fn = tf.keras.losses.SparseCategoricalCrossentropy()


@tf.function
def forward(images):
    return tf.argmax(model(images, training=False), axis=1)


@tf.function
def gradient(images, labels):
    with tf.GradientTape() as tape:
        loss = loss_fn(labels, model(images, training=False))
    for total, g in zip(sums, tape.gradient(loss, weights)):
        total.assign_add(g)
    return loss


batches = [(tf.constant(x[i:i + batch]), tf.constant(y[i:i + batch])) for i in range(0, n, batch)]
best = float("inf")
for rep in range(4):
    t0 = time.perf_counter()
    for xb, yb in batches:
        out = forward(xb) if kind == "inference" else gradient(xb, yb)
    out.numpy()
    if rep:
        best = min(best, time.perf_counter() - t0)
print(json.dumps({"images_per_second": n / best}))
