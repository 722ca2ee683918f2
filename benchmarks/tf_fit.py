#!/usr/bin/env python3
"""TensorFlow 2.15 `model.fit` training throughput on the same model, data and batch size as
`gmtool train` (SGD, Nesterov momentum 0.9, lr 0.01; no augmentation on either side): images/s of
the second epoch (the first includes tracing).

usage: tf_fit.py MODEL.h5 CIFAR_FOLDER BATCH
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
model_path, folder, batch = sys.argv[1], sys.argv[2], int(sys.argv[3])
raw = np.concatenate([np.fromfile(os.path.join(folder, f"data_batch_{i}.bin"), dtype=np.uint8).reshape(-1, 3073) for i in range(1, 5)])
y = raw[:, 0].astype(np.int64)
x = raw[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).astype(np.float32) / 255.0
model = tf.keras.models.load_model(model_path, compile=False)
model.compile(optimizer=tf.keras.optimizers.SGD(learning_rate=0.01, momentum=0.9, nesterov=True),
              loss="sparse_categorical_crossentropy", metrics=["accuracy"])


class Timer(tf.keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.last = time.perf_counter() - self.start


timer = Timer()
model.fit(x, y, batch_size=batch, epochs=2, shuffle=True, verbose=0, callbacks=[timer])
print(json.dumps({"images_per_second": len(y) / timer.last, "images": len(y)}))
