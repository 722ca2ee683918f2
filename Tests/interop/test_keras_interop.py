"""Interop: real Keras loads the checkpoints gmtool writes, and gmtool agrees with Keras.

The Swift tests (RoundTripTests.editedWeightsAndMasksSurviveAReread) write every fixture again
with gmtool, zeroing prunable kernel entries with |w| < 0.05 and storing masks, into
$GMTOOL_INTEROP_OUT/roundtrip. Here Keras (tf_keras for Keras 2 files, keras for Keras 3 files)
must load each of them, hold exactly the weights the same edit gives in NumPy, and predict what
the original model predicts with those weights.
"""
import json
import os
import subprocess

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "..", "..", "fixtures")
OUT = os.environ.get("GMTOOL_INTEROP_OUT")
GMTOOL = os.environ.get("GMTOOL_BIN")
EXPECTED = json.load(open(os.path.join(FIXTURES, "expected.json")))
THRESHOLD = np.float32(0.05)

pytestmark = pytest.mark.skipif(not OUT, reason="GMTOOL_INTEROP_OUT is not set (run scripts/test.sh)")


def keras_for(name):
    if EXPECTED["files"][name]["keras_generation"] == 2:
        import tf_keras
        return tf_keras
    import keras
    return keras


def load(name, path):
    keras = keras_for(name)
    info = EXPECTED["files"][name]
    if info["layout"] in ("keras2_full", "keras3_legacy_h5", "keras3_zip"):
        return keras.models.load_model(path, compile=False)
    source = info["architecture_source"]
    config = source if source.endswith(".json") else name.replace(".weights.h5", ".keras")
    if config.endswith(".json"):
        model = keras.models.model_from_json(open(os.path.join(FIXTURES, config)).read())
    else:
        model = keras.models.load_model(os.path.join(FIXTURES, config), compile=False)
    model.load_weights(path)
    return model


def edited(model):
    """The NumPy version of the Swift edit: zero prunable kernel entries with |w| < 0.05."""
    out = []
    for layer in model.layers:
        kinds = {"Conv2D": ("kernel",), "Dense": ("kernel",), "DepthwiseConv2D": ("depthwise_kernel", "kernel"),
                 "SeparableConv2D": ("depthwise_kernel", "pointwise_kernel")}.get(layer.__class__.__name__, ())
        for w in layer.weights:
            value = w.numpy()
            short = w.name.split("/")[-1].split(":")[0]
            if short in kinds and getattr(w, "trainable", True):
                value = np.where(np.abs(value) < THRESHOLD, np.float32(0), value)
            out.append((w, value))
    return out


CASES = sorted(EXPECTED["files"])


@pytest.mark.parametrize("name", CASES)
def test_keras_loads_what_gmtool_wrote(name):
    written = os.path.join(OUT, "roundtrip", name)
    assert os.path.exists(written), f"the Swift tests did not write {written}"
    original = load(name, os.path.join(FIXTURES, name))
    reloaded = load(name, written)
    expected = edited(original)
    zeros = 0
    for (w, value), mine in zip(expected, reloaded.weights):
        np.testing.assert_array_equal(mine.numpy(), value, err_msg=f"{name}: {w.name}")
        zeros += int(np.sum(value == 0))
    assert zeros > 0, "the edit must have zeroed something"
    for (w, value) in expected:
        w.assign(value)
    rng = np.random.default_rng(7)
    shape = (3,) + tuple(original.input_shape[1:])
    x = rng.uniform(0, 1, shape).astype(np.float32)
    np.testing.assert_array_equal(reloaded(x, training=False).numpy(), original(x, training=False).numpy())


@pytest.mark.skipif(not GMTOOL, reason="GMTOOL_BIN is not set")
@pytest.mark.parametrize("model", ["seqcnn_k2.h5", "rescnn_k3.keras", "mobilenet_k2.h5"])
def test_gmtool_eval_agrees_with_keras(model, tmp_path):
    """gmtool eval's loss and accuracy on a CIFAR-format file equal Keras' on the same images."""
    rng = np.random.default_rng(11)
    n = 64
    pixels = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, n, dtype=np.uint8)
    data = tmp_path / "images.bin"
    np.concatenate([labels[:, None], pixels.transpose(0, 3, 1, 2).reshape(n, -1)], axis=1).tofile(data)
    result = json.loads(subprocess.run([GMTOOL, "eval", os.path.join(FIXTURES, model), "--data", str(data), "--json"],
                                       check=True, capture_output=True, text=True).stdout)
    keras_model = load(model, os.path.join(FIXTURES, model))
    probabilities = keras_model(pixels.astype(np.float32) / 255.0, training=False).numpy().astype(np.float64)
    loss = float(np.mean(-np.log(probabilities[np.arange(n), labels])))
    top1 = float(np.mean(probabilities.argmax(1) == labels))
    assert result["images"] == n
    # float32 round-off: MobileNet's TensorFlow float32 loss itself sits 1.5e-4 from float64 (fixtures/golden/README.md)
    assert abs(result["mean_loss"] - loss) < 1e-4 * max(1.0, loss)
    assert result["top1_accuracy"] == pytest.approx(top1, abs=1e-9)


@pytest.mark.skipif(not GMTOOL, reason="GMTOOL_BIN is not set")
@pytest.mark.parametrize("model", ["seqcnn_k2.h5", "rescnn_k3.keras", "mobilenet_k2.h5", "seqcnn_k3.h5"])
def test_keras_loads_pruned_checkpoints_and_agrees_with_gmtool(model, tmp_path):
    """`gmtool prune` output: Keras loads it, its kernels are zero exactly where the masks are 0,
    and Keras' loss and accuracy on the same images equal `gmtool eval`'s."""
    import h5py
    rng = np.random.default_rng(5)
    n = 48
    pixels = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, n, dtype=np.uint8)
    data = tmp_path / "images.bin"
    np.concatenate([labels[:, None], pixels.transpose(0, 3, 1, 2).reshape(n, -1)], axis=1).tofile(data)
    out = tmp_path / ("pruned" + (".keras" if model.endswith(".keras") else ".h5"))
    summary = json.loads(subprocess.run(
        [GMTOOL, "prune", os.path.join(FIXTURES, model), "--beta", "0.08", "--gamma", "0.05", "--data", str(data),
         "-o", str(out), "--json", "--quiet"], check=True, capture_output=True, text=True).stdout)
    assert summary["pruned_now"] > 0
    keras_model = load(model, str(out))
    # Zeros where the masks say so (masks mirror the weight paths in the HDF5 weights).
    if model.endswith(".h5"):
        with h5py.File(out, "r") as f:
            masks = []
            f["gmtool_masks"].visititems(lambda name, obj: masks.append((name, obj[()])) if isinstance(obj, h5py.Dataset) else None)
            assert len(masks) == len(summary["layers"])
            for name, mask in masks:
                assert np.all(f["/" + name][()][mask == 0] == 0)
    result = json.loads(subprocess.run([GMTOOL, "eval", str(out), "--data", str(data), "--json"],
                                       check=True, capture_output=True, text=True).stdout)
    probabilities = keras_model(pixels.astype(np.float32) / 255.0, training=False).numpy().astype(np.float64)
    loss = float(np.mean(-np.log(probabilities[np.arange(n), labels])))
    # float32 round-off: MobileNet's TensorFlow float32 loss itself sits 1.5e-4 from float64 (fixtures/golden/README.md)
    assert abs(result["mean_loss"] - loss) < 1e-4 * max(1.0, loss)
    assert result["top1_accuracy"] == pytest.approx(float(np.mean(probabilities.argmax(1) == labels)), abs=1e-9)
    total_zero = sum(int(np.sum(w.numpy() == 0)) for w in keras_model.weights)
    assert total_zero >= summary["total_parameters"] - summary["nonzero_after"]


SPARSE_CASES = ["mobilenet_k2.csr.h5", "mobilenet_k2.bitmask.h5", "rescnn_k3.csr.h5"]


def dense_path(attrs):
    """Where `gmtool import` puts a weight: its legacy name, or <layer>/<role> for Keras 3 vars."""
    layer, name, role = attrs["layer"], attrs["name"], attrs["role"]
    if "/" not in name or name.startswith("vars/"):
        name = f"{layer}/{role}"
    return f"/model_weights/{layer}/{name}"


@pytest.mark.parametrize("name", SPARSE_CASES)
def test_sparse_export_reads_with_h5py_and_scipy(name):
    """Without gmtool: every kernel of the export rebuilds, with h5py + scipy (+ anndata for the
    csr_matrix encoding), to exactly the dense checkpoint's values, and the stored entries are the
    mask's 1 bits."""
    import h5py
    import scipy.sparse as sp
    folder = os.path.join(OUT, "sparse")
    exported = os.path.join(folder, name)
    assert os.path.exists(exported), f"the Swift tests did not write {exported}"
    dense_file = os.path.join(folder, name.split(".")[0] + ".dense.h5")
    kernels = 0
    with h5py.File(exported, "r") as f, h5py.File(dense_file, "r") as d:
        assert f.attrs["gmtool_format"] == "gmtool-sparse-keras"
        json.loads(f.attrs["model_config"])  # the architecture travels with the weights

        def check(path, obj):
            nonlocal kernels
            if "order" not in obj.attrs:
                return
            attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in obj.attrs.items()}
            shape = tuple(int(s) for s in attrs["keras_shape"])
            expected = d[dense_path(attrs)][()]
            mask_path = "/gmtool_masks" + dense_path(attrs)
            if isinstance(obj, h5py.Dataset):
                np.testing.assert_array_equal(obj[()], expected)
                return
            rows, cols = (int(s) for s in attrs["shape"])
            encoding = attrs["encoding-type"]
            if encoding == "csr_matrix":
                assert obj["indices"].dtype in (np.int32, np.int64) and obj["indptr"].dtype in (np.int32, np.int64)
                matrix = sp.csr_matrix((obj["data"][()], obj["indices"][()], obj["indptr"][()]), shape=(rows, cols))
                assert matrix.has_sorted_indices
                try:
                    from anndata.io import read_elem
                except ImportError:  # anndata < 0.11
                    from anndata.experimental import read_elem
                np.testing.assert_array_equal(read_elem(obj).toarray(), matrix.toarray())
                pattern = np.zeros((rows, cols), bool)
                pattern[np.repeat(np.arange(rows), np.diff(matrix.indptr)), matrix.indices] = True
                values = matrix.toarray()
            else:
                assert encoding == "gmtool_bitmask"
                pattern = np.unpackbits(obj["bits"][()])[: rows * cols].astype(bool).reshape(rows, cols)
                values = np.zeros((rows, cols), np.float32)
                values[pattern] = obj["data"][()]
            # Rows are output channels: the Keras kernel is the transpose, reshaped.
            np.testing.assert_array_equal(values.T.reshape(shape), expected)
            if mask_path in d:
                np.testing.assert_array_equal(pattern.T.reshape(shape), d[mask_path][()] != 0)
            kernels += 1

        f["weights"].visititems(check)
    assert kernels > 0


@pytest.mark.skipif(not GMTOOL, reason="GMTOOL_BIN is not set")
def test_keras_loads_what_gmtool_train_wrote(tmp_path):
    """`gmtool train` output (weights, masks, the /gmtool_training state) loads in Keras and
    predicts what `gmtool eval` computes."""
    rng = np.random.default_rng(3)
    for i in range(1, 6):
        n = 32
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        pixels = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        np.concatenate([labels[:, None], pixels], axis=1).tofile(tmp_path / f"data_batch_{i}.bin")
    out = tmp_path / "trained.h5"
    subprocess.run([GMTOOL, "train", os.path.join(FIXTURES, "seqcnn_k2.h5"), "--data", str(tmp_path), "--epochs", "2",
                    "--batch-size", "16", "--lr", "0.05", "--nesterov", "--beta", "0.05", "-o", str(out), "--quiet"],
                   check=True, capture_output=True)
    model = load("seqcnn_k2.h5", str(out))
    raw = np.fromfile(tmp_path / "data_batch_5.bin", dtype=np.uint8).reshape(-1, 3073)
    x = raw[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).astype(np.float32) / 255.0
    labels = raw[:, 0]
    p = model(x, training=False).numpy().astype(np.float64)
    loss = float(np.mean(-np.log(p[np.arange(len(labels)), labels])))
    result = json.loads(subprocess.run([GMTOOL, "eval", str(out), "--data", str(tmp_path / "data_batch_5.bin"), "--json"],
                                       check=True, capture_output=True, text=True).stdout)
    assert abs(result["mean_loss"] - loss) < 1e-4 * max(1.0, loss)
