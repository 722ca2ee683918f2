#!/usr/bin/env python3
"""TensorFlow inference images/s on a checkpoint at a given batch size (tf.function, training
False, best of 3 passes over the images), for the sparse-inference comparison.

usage: tf_infer.py MODEL.h5 DATA.bin BATCH N
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
raw = np.fromfile(data, dtype=np.uint8).reshape(-1, 3073)[:n]
x = raw[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).astype(np.float32) / 255.0
model = tf.keras.models.load_model(model_path, compile=False)


@tf.function
def forward(images):
    return tf.argmax(model(images, training=False), axis=1)


best = float("inf")
for rep in range(4):
    t0 = time.perf_counter()
    for i in range(0, n, batch):
        out = forward(x[i:i + batch])
    out.numpy()
    if rep:
        best = min(best, time.perf_counter() - t0)
print(json.dumps({"images_per_second": n / best}))
