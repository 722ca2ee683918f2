#!/usr/bin/env python3
"""Converts a Keras .h5 to .tflite with TensorFlow 2.15's tf.lite converter, for the LiteRT rows
of the sparse section: `dense` as is, `sparse` with Optimize.EXPERIMENTAL_SPARSITY (the kernels
stored sparse so XNNPACK may run its sparse kernels).

usage: tflite_convert.py MODEL.h5 OUT.tflite dense|sparse
"""
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import tensorflow as tf  # noqa: E402

model_path, out, mode = sys.argv[1], sys.argv[2], sys.argv[3]
model = tf.keras.models.load_model(model_path, compile=False)
converter = tf.lite.TFLiteConverter.from_keras_model(model)
if mode == "sparse":
    converter.optimizations = [tf.lite.Optimize.EXPERIMENTAL_SPARSITY]
data = converter.convert()
with open(out + ".tmp", "wb") as f:
    f.write(data)
os.replace(out + ".tmp", out)
