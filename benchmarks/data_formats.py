#!/usr/bin/env python3
"""eval images/s by data format, beside TensorFlow's own image-folder pipeline, in the same run.

The first N images of ../shared/data/cifar10-jpeg/test_batch.bin are written to a temporary
folder as CIFAR-10 binary, an .npz (np.savez) and a JPEG folder (Pillow, quality 90, one
subfolder per class). `gmtool eval` (release build) reads each; its JSON images_per_second
covers the passes over the data, decoding included. The peer: tf_keras'
image_dataset_from_directory on the same JPEG folder (image_size 32x32, shuffle off, x/255) +
model.predict, TensorFlow limited to the same thread count. Peak memory (max RSS) from
/usr/bin/time for gmtool on N and 4N JPEGs shows whether it grows with the number of images.

    .venv/bin/python benchmarks/data_formats.py [--n 2000] [--threads 2] [--repeats 3]

Timings are noisy on a shared machine: best of --repeats.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(ROOT, "..", "shared")
MODEL = os.path.join(SHARED, "models", "mobilenet_0.50_cifar10.h5")
DATA = os.path.join(SHARED, "data", "cifar10-jpeg", "test_batch.bin")


def write_formats(folder, n):
    from PIL import Image
    os.makedirs(folder, exist_ok=True)
    records = np.fromfile(DATA, dtype=np.uint8).reshape(-1, 3073)
    records = np.concatenate([records] * (n // len(records) + 1))[:n]
    labels = records[:, 0].astype(np.int64)
    nhwc = records[:, 1:].reshape(n, 3, 32, 32).transpose(0, 2, 3, 1)
    paths = {"cifar-binary": [os.path.join(folder, "test.bin")], "npz": [os.path.join(folder, "test.npz")],
             "jpeg-folder": [os.path.join(folder, "jpeg")]}
    records.tofile(paths["cifar-binary"][0])
    np.savez(paths["npz"][0], x=nhwc, y=labels)
    for i, (image, label) in enumerate(zip(nhwc, labels)):
        os.makedirs(os.path.join(folder, "jpeg", f"c{label}"), exist_ok=True)
        Image.fromarray(image, "RGB").save(os.path.join(folder, "jpeg", f"c{label}", f"{i:06d}.jpg"), quality=90)
    return paths


def gmtool_eval(binary, data, threads, repeats):
    best, rss = 0.0, 0
    for _ in range(repeats):
        cmd = ["/usr/bin/time", "-f", "%M", binary, "eval", MODEL, "--data", *data, "--json", "--threads", str(threads)]
        result = subprocess.run(cmd, capture_output=True, text=True, check=True)
        best = max(best, json.loads(result.stdout)["images_per_second"])
        rss = max(rss, int(result.stderr.strip().splitlines()[-1]))
    return best, rss


def tf_peer(folder, n, threads, repeats):
    import tensorflow as tf
    import tf_keras
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    model = tf_keras.models.load_model(MODEL, compile=False)
    best = 0.0
    for _ in range(repeats + 1):  # the first pass traces
        t0 = time.perf_counter()
        ds = tf_keras.utils.image_dataset_from_directory(folder, image_size=(32, 32), batch_size=100, shuffle=False)
        ds = ds.map(lambda x, y: x / 255.0).prefetch(tf.data.AUTOTUNE)
        out = model.predict(ds, verbose=0)
        assert len(out) == n
        best = max(best, n / (time.perf_counter() - t0))
    return best


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--gmtool", default=os.path.join(ROOT, ".build", "release", "gmtool"))
    args = ap.parse_args()
    folder = tempfile.mkdtemp(prefix="gmtool-bench-data-")
    try:
        paths = write_formats(os.path.join(folder, "n"), args.n)
        print(f"eval, mobilenet_0.50_cifar10, {args.n} images, {args.threads} threads, best of {args.repeats}")
        print(f"{'source':<44}{'images/s':>10}{'max RSS MiB':>13}")
        for name, data in paths.items():
            ips, rss = gmtool_eval(args.gmtool, data, args.threads, args.repeats)
            print(f"{'gmtool eval, ' + name:<44}{ips:>10.0f}{rss / 1024:>13.0f}")
        ips = tf_peer(paths["jpeg-folder"][0], args.n, args.threads, args.repeats)
        print(f"{'tf_keras image_dataset_from_directory+predict':<44}{ips:>10.0f}{'':>13}")
        big = write_formats(os.path.join(folder, "4n"), 4 * args.n)["jpeg-folder"]
        ips, rss = gmtool_eval(args.gmtool, big, args.threads, 1)
        print(f"{'gmtool eval, jpeg-folder, ' + str(4 * args.n) + ' images':<44}{ips:>10.0f}{rss / 1024:>13.0f}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
