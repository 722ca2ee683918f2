#!/usr/bin/env python3
"""The large-input case of benchmarks/shards.sh (issue 15's user with a 224x224 model): a
keras.applications.MobileNet (alpha 1.0, 224x224x3, 10 classes, weights=None, BatchNorm moving
statistics set away from 0/1, seeded) saved by TensorFlow 2.15's Keras (`model.save`, .h5), and
the first IMAGES CIFAR-10 test images scaled up 7x (nearest) to 224x224 as two NumPy files
(uint8 NHWC images, int64 labels). The timings do not depend on the values.

usage: make_large_input.py OUT_DIR [IMAGES]   (default 1000 images: 150 MB of .npy)
"""
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

out = sys.argv[1]
count = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
os.makedirs(out, exist_ok=True)
tf.keras.utils.set_random_seed(0)
model = tf.keras.applications.MobileNet(input_shape=(224, 224, 3), alpha=1.0, weights=None, classes=10)
rng = np.random.default_rng(0)
for layer in model.layers:
    if isinstance(layer, tf.keras.layers.BatchNormalization):
        gamma, beta, mean, variance = layer.get_weights()
        layer.set_weights([gamma, beta, rng.normal(0, 0.1, mean.shape).astype("float32"),
                           rng.uniform(0.5, 1.5, variance.shape).astype("float32")])
model.save(os.path.join(out, "mobilenet_1.00_224.h5"))

here = os.path.dirname(os.path.abspath(__file__))
records = np.fromfile(os.path.join(here, "..", "..", "shared", "data", "cifar10-jpeg", "test_batch.bin"), dtype=np.uint8)
records = records.reshape(-1, 3073)[:count]
images = records[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
images = images.repeat(7, axis=1).repeat(7, axis=2)
np.save(os.path.join(out, "x.npy"), np.ascontiguousarray(images))
np.save(os.path.join(out, "y.npy"), records[:, 0].astype(np.int64))
print(f"wrote {out}/mobilenet_1.00_224.h5, x.npy {images.shape}, y.npy")
