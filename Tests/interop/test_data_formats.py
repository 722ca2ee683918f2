"""The same CIFAR-10 test images in every format gmtool reads give the same eval.

The first 200 official test images (../shared/data/cifar10-exact-subset) are written here, by
Python, as CIFAR-10 binary, a Python pickled batch (Python 3's own protocol 2, the other pickle
dialect from the Python 2 fixtures in fixtures/data/cifar-python), an .npz archive (deflated)
and a PNG folder (Pillow, one subfolder per class as image_dataset_from_directory reads it).
`gmtool eval` on each must report the same top-1, top-5 and loss, to the last digit: the pixels
are the same bytes, so the inputs, batches and network are the same.
"""
import json
import os
import pickle
import subprocess

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED = os.path.join(HERE, "..", "..", "..", "shared")
MODEL = os.path.join(SHARED, "models", "mobilenet_0.50_cifar10.h5")
SUBSET = os.path.join(SHARED, "data", "cifar10-exact-subset", "test_batch_first1000.bin")
GMTOOL = os.environ.get("GMTOOL_BIN")
N = 200

pytestmark = pytest.mark.skipif(not GMTOOL, reason="GMTOOL_BIN is not set (run scripts/test.sh)")


@pytest.fixture(scope="module")
def formats(tmp_path_factory):
    folder = tmp_path_factory.mktemp("formats")
    records = np.fromfile(SUBSET, dtype=np.uint8)[: N * 3073].reshape(N, 3073)
    # In the order the PNG folder lists them (class folders class0..class9, then file names), so
    # that every format gives the same batches: per-image float32 results can depend on where an
    # image falls in a chunk (BLAS kernels treat a matrix's edge rows with other code), so only
    # the same batches make "to the last digit" a claim about the formats alone.
    records = records[np.lexsort((np.arange(N), records[:, 0]))]
    labels, planes = records[:, 0].astype(np.int64), records[:, 1:]
    nhwc = planes.reshape(N, 3, 32, 32).transpose(0, 2, 3, 1)
    paths = {}
    paths["binary"] = [str(folder / "test_batch.bin")]
    records.tofile(paths["binary"][0])
    paths["python"] = [str(folder / "test_batch")]
    with open(paths["python"][0], "wb") as f:
        pickle.dump({b"batch_label": b"testing batch 1 of 1", b"labels": [int(v) for v in labels],
                     b"data": np.ascontiguousarray(planes), b"filenames": [b"%d.png" % i for i in range(N)]}, f, protocol=2)
    paths["npz"] = [str(folder / "cifar10.npz")]
    np.savez_compressed(paths["npz"][0], x_test=nhwc, y_test=labels.reshape(N, 1))
    from PIL import Image
    paths["png"] = [str(folder / "png")]
    for i, (image, label) in enumerate(zip(nhwc, labels)):
        os.makedirs(folder / "png" / f"class{label}", exist_ok=True)
        Image.fromarray(image, "RGB").save(folder / "png" / f"class{label}" / f"{i:04d}.png")
    return folder, paths, nhwc, labels


def evaluate(data, *extra):
    result = subprocess.run([GMTOOL, "eval", MODEL, "--data", *data, "--json", *extra], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.parametrize("scale", ["unit", "tf"])
def test_every_format_gives_the_same_eval(formats, scale):
    _, paths, _, _ = formats
    reports = {name: evaluate(data, "--scale", scale) for name, data in paths.items()}
    reference = reports["binary"]
    assert reference["images"] == N
    for name, report in reports.items():
        for key in ["images", "top1_accuracy", "top5_accuracy"]:
            assert report[key] == reference[key], (name, key, report[key], reference[key])
        assert report["mean_loss"] == reference["mean_loss"], (name, report["mean_loss"], reference["mean_loss"])
