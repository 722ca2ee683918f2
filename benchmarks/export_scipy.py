#!/usr/bin/env python3
"""The scipy + h5py path a user writes today for a sparse export, on the kernels of a pruned
checkpoint: read every kernel, scipy.sparse.csr_matrix per kernel (rows = output channels, as
gmtool stores them), write data/indices/indptr with gzip level 4 (the peer script's setting).
Prints JSON: file bytes, seconds (best of --repeats), and a round-trip check.

usage: export_scipy.py PRUNED.h5 OUT.h5 [--repeats N]
"""
import json
import sys
import time

import h5py
import numpy as np
import scipy.sparse as sp

src, out = sys.argv[1], sys.argv[2]
repeats = int(sys.argv[sys.argv.index("--repeats") + 1]) if "--repeats" in sys.argv else 3


def kernels():
    found = {}
    with h5py.File(src, "r") as f:
        g = f["model_weights"]
        for layer in g.attrs["layer_names"]:
            layer = layer.decode() if isinstance(layer, bytes) else layer
            for w in g[layer].attrs["weight_names"]:
                w = w.decode() if isinstance(w, bytes) else w
                if w.split("/")[-1].split(":")[0] in ("kernel", "depthwise_kernel"):
                    found[f"{layer}/{w}"] = g[layer][w][()]
    return found


def export():
    with h5py.File(out, "w") as f:
        for name, a in kernels().items():
            trailing = 2 if "depthwise" in name else 1
            rows = int(np.prod(a.shape[-trailing:]))
            m = sp.csr_matrix(a.reshape(-1, rows).T)
            g = f.create_group(name)
            for key, value in (("data", m.data), ("indices", m.indices), ("indptr", m.indptr)):
                g.create_dataset(key, data=value, compression="gzip", compression_opts=4)
            g.attrs["shape"] = m.shape
            g.attrs["original_shape"] = a.shape


best = float("inf")
for _ in range(repeats + 1):
    t0 = time.perf_counter()
    export()
    best = min(best, time.perf_counter() - t0)
ok = True
with h5py.File(out, "r") as f:
    for name, a in kernels().items():
        g = f[name]
        trailing = 2 if "depthwise" in name else 1
        m = sp.csr_matrix((g["data"][()], g["indices"][()], g["indptr"][()]), shape=tuple(g.attrs["shape"]))
        ok &= bool(np.array_equal(m.toarray().T.reshape(a.shape), a))
import os  # noqa: E402
print(json.dumps({"file_bytes": os.path.getsize(out), "seconds": best, "roundtrip_ok": ok}))
