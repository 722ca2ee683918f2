"""Exit 0 when two checkpoints written by `gmtool train` are the same run: every group and
dataset (weights, masks, optimizer slots) with the same bytes, every attribute equal, except the
training history's timings (`seconds`, `train_images_per_second`), which depend on the machine.
Prints the first difference otherwise (exit 1). Used by scripts/slurm-test.sh.
Usage: python scripts/same_training.py A.h5 B.h5"""
import re
import sys

import h5py
import numpy as np

TIMINGS = re.compile(r'"(seconds|train_images_per_second)":[0-9.e+-]+')


def attribute(obj, name):
    value = obj.attrs[name]
    if isinstance(value, bytes):
        value = value.decode()
    if name == "history" and isinstance(value, str):
        value = TIMINGS.sub("", value)
    return value


def same(a, b, where="/"):
    if sorted(a.attrs) != sorted(b.attrs):
        return f"{where}: attributes {sorted(a.attrs)} against {sorted(b.attrs)}"
    for name in a.attrs:
        x, y = attribute(a, name), attribute(b, name)
        if not np.array_equal(np.asarray(x), np.asarray(y)):
            return f"{where}@{name}: {x!r} against {y!r}"
    if isinstance(a, h5py.Dataset):
        x, y = a[()], b[()]
        if x.dtype != y.dtype or x.shape != y.shape or np.asarray(x).tobytes() != np.asarray(y).tobytes():
            return f"{where}: the values differ"
        return None
    if sorted(a) != sorted(b):
        return f"{where}: members {sorted(a)} against {sorted(b)}"
    for name in a:
        difference = same(a[name], b[name], f"{where.rstrip('/')}/{name}")
        if difference:
            return difference
    return None


if __name__ == "__main__":
    with h5py.File(sys.argv[1], "r") as a, h5py.File(sys.argv[2], "r") as b:
        difference = same(a, b)
    if difference:
        print(f"{sys.argv[1]} and {sys.argv[2]} differ: {difference}")
        sys.exit(1)
