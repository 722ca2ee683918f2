#!/usr/bin/env python3
"""keras.applications families through `gmtool eval`, against Keras on the same images.

Usage (from the repository root, after a build):
    TF_CPP_MIN_LOG_LEVEL=3 .venv/bin/python benchmarks/applications.py [--gmtool .build/release/gmtool]
        [--families MobileNetV2,EfficientNetB0,...] [--out bench-out/applications]

For each family and each Keras (tf_keras 2 `model.save` .h5, Keras 3 `.keras`): the model with
weights=None, classes=10 at its smallest input (32x32 where the family allows it), BatchNorm
moving statistics set away from 0/1 so inference-mode BatchNorm does something, saved; 8 random
uint8 images and labels as a NumPy pair; Keras' mean cross-entropy of model.predict(x / 255)
against gmtool's `eval --json` mean loss (gmtool's default scaling is x / 255). Prints one row per
model; a family gmtool refuses prints its one-line reason. Not part of the test suite (building
the models takes minutes).
"""
import argparse
import json
import os
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np  # noqa: E402

FAMILIES = {
    "MobileNet": 32, "MobileNetV2": 32, "MobileNetV3Small": 32, "MobileNetV3Large": 32,
    "EfficientNetB0": 32, "EfficientNetV2B0": 32, "ResNet50": 32, "ResNet50V2": 32,
    "DenseNet121": 32, "VGG16": 32, "NASNetMobile": 32, "InceptionV3": 75, "Xception": 71,
}


def build(module, family, size, path):
    module.utils.set_random_seed(1)
    model = getattr(module.applications, family)(weights=None, classes=10, input_shape=(size, size, 3))
    for layer in model.layers:
        if type(layer).__name__ == "BatchNormalization":
            # [gamma,] [beta,] moving_mean, moving_variance (InceptionV3 has scale=False).
            *affine, mean, variance = layer.get_weights()
            rng = np.random.default_rng(len(layer.name))
            layer.set_weights(affine + [rng.normal(0, 0.1, mean.shape), rng.uniform(0.5, 1.5, variance.shape)])
    model.save(path)
    return model


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--gmtool", default=".build/release/gmtool")
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument("--out", default="bench-out/applications")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    import keras
    import tf_keras

    print(f"{'family':18} {'keras':6} {'Keras loss':>12} {'gmtool loss':>12} {'|diff|':>9}")
    for family in args.families.split(","):
        size = FAMILIES[family]
        x = np.random.default_rng(0).integers(0, 256, (8, size, size, 3)).astype(np.uint8)
        y = np.arange(8) % 10
        xs, ys = os.path.join(args.out, f"{family}_x.npy"), os.path.join(args.out, f"{family}_y.npy")
        np.save(xs, x)
        np.save(ys, y)
        for name, module, ext in [("2", tf_keras, ".h5"), ("3", keras, ".keras")]:
            path = os.path.join(args.out, f"{family}_k{name}{ext}")
            try:
                model = build(module, family, size, path)
            except Exception as error:  # a family Keras cannot build at this size
                print(f"{family:18} {name:6} Keras could not build it: {str(error).splitlines()[0][:80]}")
                continue
            p = model.predict(x.astype(np.float32) / np.float32(255), verbose=0)
            keras_loss = float(-np.log(p[np.arange(8), y]).mean())
            result = subprocess.run([args.gmtool, "eval", path, "--data", xs, ys, "--json"], capture_output=True, text=True)
            if result.returncode != 0:
                print(f"{family:18} {name:6} {keras_loss:12.7f}  refused: {result.stderr.strip()[:160]}")
                continue
            loss = json.loads(result.stdout)["mean_loss"]
            print(f"{family:18} {name:6} {keras_loss:12.7f} {loss:12.7f} {abs(loss - keras_loss):9.2e}")
            sys.stdout.flush()


if __name__ == "__main__":
    main()
