#!/usr/bin/env python3
"""The throughput section's two other families, written once by TensorFlow 2.15's Keras
(`model.save`, .h5): keras.applications.MobileNetV2 (alpha 1.0, 32x32, 10 classes,
weights=None) and the keras.io ResNet-20 for CIFAR-10 (resnet_v1, depth 20: 16/32/64 filters,
3x3 convolutions with BatchNorm and ReLU, identity shortcuts, 1x1 projection when the size
changes, 8x8 average pooling, softmax Dense). BatchNorm's moving statistics are set away from
0/1 (seeded) so inference-mode BatchNorm does real work; the timings do not depend on the values.

usage: make_family_models.py OUT_DIR
"""
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

layers = tf.keras.layers


def resnet20(classes=10):
    def block(x, filters, strides):
        y = layers.Conv2D(filters, 3, strides=strides, padding="same", kernel_initializer="he_normal",
                          kernel_regularizer=tf.keras.regularizers.l2(1e-4))(x)
        y = layers.BatchNormalization()(y)
        y = layers.Activation("relu")(y)
        y = layers.Conv2D(filters, 3, padding="same", kernel_initializer="he_normal",
                          kernel_regularizer=tf.keras.regularizers.l2(1e-4))(y)
        y = layers.BatchNormalization()(y)
        if strides != 1:
            x = layers.Conv2D(filters, 1, strides=strides, padding="same", kernel_initializer="he_normal",
                              kernel_regularizer=tf.keras.regularizers.l2(1e-4))(x)
        return layers.Activation("relu")(layers.add([x, y]))

    inputs = tf.keras.Input((32, 32, 3))
    x = layers.Conv2D(16, 3, padding="same", kernel_initializer="he_normal")(inputs)
    x = layers.Activation("relu")(layers.BatchNormalization()(x))
    for stage, filters in enumerate((16, 32, 64)):
        for b in range(3):
            x = block(x, filters, 2 if stage > 0 and b == 0 else 1)
    x = layers.AveragePooling2D(pool_size=8)(x)
    x = layers.Flatten()(x)
    outputs = layers.Dense(classes, activation="softmax", kernel_initializer="he_normal")(x)
    return tf.keras.Model(inputs, outputs, name="resnet20")


def set_statistics(model, rng):
    for layer in model.layers:
        if isinstance(layer, layers.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([gamma, beta, rng.normal(0, 0.1, mean.shape).astype(np.float32),
                               rng.uniform(0.5, 1.5, var.shape).astype(np.float32)])


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(0)
    tf.keras.utils.set_random_seed(0)
    models = {
        "mobilenetv2_a1.0.h5": tf.keras.applications.MobileNetV2(input_shape=(32, 32, 3), alpha=1.0, weights=None, classes=10),
        "resnet20.h5": resnet20(),
    }
    for name, model in models.items():
        set_statistics(model, rng)
        model.save(os.path.join(out, name))
        print(name, model.count_params())


if __name__ == "__main__":
    main()
