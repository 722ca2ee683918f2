"""Interop: two keras.applications families through the whole tool, built by real Keras here.

MobileNetV2 (alpha 0.35) and EfficientNetB0 (its Rescaling and Normalization preprocessing,
swish and squeeze-excite) at 32x32 with weights=None and 10 classes, BatchNorm moving statistics
set away from 0/1 so inference-mode BatchNorm acts, the classifier's kernel scaled down so the
softmax does not saturate, saved by tf_keras 2 (`model.save`, .h5) and
by Keras 3 (.keras). On tiny CIFAR-format data, each goes through:
  grad -> prune --gradients (the paper's rule, checked weight by weight in NumPy against the
  gradients gmtool wrote) -> Keras loads the pruned file and agrees with `gmtool eval` ->
  export -> eval of the export equals eval of the pruned file -> a two-epoch `train` with
  pruning after each epoch, from the pruned file: every weight pruned before stays zero, the
  masks only lose bits, and Keras loads the result and agrees with `gmtool eval`.
"""
import json
import os
import subprocess

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

GMTOOL = os.environ.get("GMTOOL_BIN")
pytestmark = pytest.mark.skipif(not GMTOOL, reason="GMTOOL_BIN is not set (run scripts/test.sh)")

BETA, GAMMA = 0.04, 1e-3
IMAGES = 24  # per CIFAR batch file: 4 x 24 training images, 24 for validation


def gmtool(*arguments):
    result = subprocess.run([GMTOOL, *arguments], capture_output=True, text=True)
    assert result.returncode == 0, f"gmtool {' '.join(arguments)}: {result.stderr}"
    return result.stdout


def build(family, generation, path):
    if generation == 2:
        import tf_keras as keras
    else:
        import keras
    keras.utils.set_random_seed(1)
    if family == "MobileNetV2":
        model = keras.applications.MobileNetV2(input_shape=(32, 32, 3), alpha=0.35, weights=None, classes=10)
    else:
        model = keras.applications.EfficientNetB0(input_shape=(32, 32, 3), weights=None, classes=10)
    rng = np.random.default_rng(2)
    for layer in model.layers:
        if layer.__class__.__name__ == "BatchNormalization":
            gamma, beta, mean, variance = layer.get_weights()
            layer.set_weights([gamma, beta, rng.normal(0, 0.2, mean.shape).astype(np.float32),
                               rng.uniform(0.5, 2.0, variance.shape).astype(np.float32)])
    # Random weights through EfficientNet's 16 blocks give logits in the hundreds (a loss of
    # about 1,300 and probabilities that underflow to 0 in float32): shrink the classifier so
    # the loss is finite and comparable.
    head = model.get_layer("predictions")
    kernel, bias = head.get_weights()
    head.set_weights([kernel * np.float32(1e-3), bias])
    model.save(path)
    return keras


def write_cifar(folder, rng):
    for index in range(1, 6):
        labels = rng.integers(0, 10, IMAGES, dtype=np.uint8)
        pixels = rng.integers(0, 256, (IMAGES, 3072), dtype=np.uint8)
        np.concatenate([labels[:, None], pixels], axis=1).tofile(folder / f"data_batch_{index}.bin")


def keras_loss(keras, path, data):
    raw = np.fromfile(data, dtype=np.uint8).reshape(-1, 3073)
    x = raw[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).astype(np.float32) / 255.0
    labels = raw[:, 0]
    model = keras.models.load_model(str(path), compile=False)
    p = np.asarray(model(x, training=False)).astype(np.float64)
    return float(np.mean(-np.log(p[np.arange(len(labels)), labels]))), float(np.mean(p.argmax(1) == labels)), model


def agrees(keras, path, data):
    """Keras' loss and top-1 on `data` equal `gmtool eval`'s on the file gmtool wrote."""
    loss, top1, model = keras_loss(keras, path, data)
    result = json.loads(gmtool("eval", str(path), "--data", str(data), "--json"))
    # float32 round-off: TensorFlow's own float32 loss sits up to 1.5e-4 from float64 on
    # MobileNet (fixtures/golden/README.md); these deeper models stay within the same bound.
    assert abs(result["mean_loss"] - loss) < 1e-4 * max(1.0, loss), (result["mean_loss"], loss)
    assert result["top1_accuracy"] == pytest.approx(top1, abs=1e-9)
    return model


def h5_datasets(path):
    """Every dataset of an .h5 file (a .keras archive's model.weights.h5 for Keras 3), by path."""
    import h5py
    import zipfile
    if str(path).endswith(".keras"):
        import io
        with zipfile.ZipFile(path) as archive:
            handle = h5py.File(io.BytesIO(archive.read("model.weights.h5")), "r")
    else:
        handle = h5py.File(path, "r")
    out = {}
    with handle as f:
        f.visititems(lambda name, obj: out.__setitem__("/" + name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return out


@pytest.mark.parametrize("family", ["MobileNetV2", "EfficientNetB0"])
@pytest.mark.parametrize("generation", [2, 3])
def test_application_prunes_exports_and_trains(family, generation, tmp_path):
    model_path = tmp_path / ("model.h5" if generation == 2 else "model.keras")
    keras = build(family, generation, model_path)
    data = tmp_path / "cifar"
    data.mkdir()
    write_cifar(data, np.random.default_rng(3))
    validation, test = data / "data_batch_5.bin", data / "data_batch_1.bin"
    agrees(keras, model_path, test)

    # The paper's rule from gradients gmtool wrote, checked entry by entry.
    grads = tmp_path / "grads.h5"
    gmtool("grad", str(model_path), "--data", str(data), "--split", "validation", "-o", str(grads), "--quiet")
    pruned = tmp_path / ("pruned" + model_path.suffix)
    summary = json.loads(gmtool("prune", str(model_path), "--beta", str(BETA), "--gamma", str(GAMMA),
                                "--gradients", str(grads), "-o", str(pruned), "--json", "--quiet"))
    assert summary["pruned_now"] > 0
    before, after, g = h5_datasets(model_path), h5_datasets(pruned), h5_datasets(grads)
    masks = {path[len("/gmtool_masks"):]: mask for path, mask in after.items() if path.startswith("/gmtool_masks/")}
    assert len(masks) == len(summary["layers"]), "one mask per kernel the rule visited"
    for path, mask in masks.items():
        w, grad = before[path], g[path]
        rule = (np.abs(w) < np.float32(BETA)) & (np.abs(grad) < np.float32(GAMMA))
        np.testing.assert_array_equal(mask, (~rule).astype(mask.dtype), err_msg=path)
        np.testing.assert_array_equal(after[path], np.where(rule, np.float32(0), w), err_msg=path)
    agrees(keras, pruned, test)

    # The sparse export runs with the pruned file's top-1 exactly and its loss to 1e-6.
    sparse = tmp_path / "sparse.h5"
    gmtool("export", str(pruned), "-o", str(sparse))
    dense_eval = json.loads(gmtool("eval", str(pruned), "--data", str(test), "--json"))
    sparse_eval = json.loads(gmtool("eval", str(sparse), "--data", str(test), "--json"))
    assert sparse_eval["top1_accuracy"] == dense_eval["top1_accuracy"]
    assert abs(sparse_eval["mean_loss"] - dense_eval["mean_loss"]) <= 1e-6

    # Two epochs of training with pruning after each: nothing pruned comes back.
    trained = tmp_path / ("trained" + model_path.suffix)
    gmtool("train", str(pruned), "--data", str(data), "--epochs", "2", "--batch-size", "16", "--lr", "0.01",
           "--beta", str(BETA), "--gamma", str(GAMMA), "--delta", "1", "-o", str(trained), "--quiet")
    after_training = h5_datasets(trained)
    for path, mask in masks.items():
        kept = after_training["/gmtool_masks" + path]
        assert np.all(kept <= mask), f"{path}: a mask bit came back"
        assert np.all(after_training[path][kept == 0] == 0), f"{path}: a masked weight is not zero"
        assert np.count_nonzero(after_training[path] != before[path]) > 0, f"{path}: training changed nothing"
    agrees(keras, trained, test)
