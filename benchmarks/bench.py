#!/usr/bin/env python3
"""gmtool benchmarks, side by side with the peer tools in the same run.

Usage (from the repository root):
    bash benchmarks/run.sh [--sections stats,throughput,memory] [--n 2000] [--repeats 3] [--baseline OLD_GMTOOL]

Sections
  stats       `gmtool stats` on the 13 MB MobileNet alpha 1.0 file vs an h5py script reading
              every weight (both whole processes, best and median of --repeats runs).
  throughput  images/s of inference and of the gradient pass, MobileNet alpha 1.0 and 0.5,
              MobileNetV2 alpha 1.0 and ResNet-20 (benchmarks/make_family_models.py), 32x32,
              batch 100: gmtool vs TensorFlow 2.15 (tf.function) and PyTorch (if installed; MobileNet
              only), the peers timed by ../shared/bench/bench_peers.py (MobileNet) and
              benchmarks/tf_infer.py (the other two) on the same images. Also the
              FLOP rate gmtool reaches against the machine's measured sgemm rate.
  rule        the pruning rule alone over 14 million float32 weights: gmtool's kernel vs NumPy
              (bench_peers.py --sections numpy, naive and preallocated) vs memcpy of the same arrays.
  prune       the whole `gmtool prune` on MobileNet alpha 1.0 with the 10,000 validation images
              vs benchmarks/prune_tf.py (TensorFlow + NumPy + h5py), both whole processes.
  export      MobileNet alpha 1.0 pruned to 90% (gmtool prune --target-sparsity 0.9): `gmtool export`
              file size and time vs benchmarks/export_scipy.py (scipy CSR + h5py gzip, same kernels).
  sparse      the break-even table: MobileNet alpha 1.0 with every kernel pruned to 50/70/80/90/95%,
              inference images/s at batch 1 and 100 of the sparse export (`eval --kernels auto`,
              the default, and `--kernels sparse`) vs gmtool's dense path on the pruned .h5 vs
              TensorFlow 2.15 (and LiteRT dense and EXPERIMENTAL_SPARSITY with --litert); then
              each sparse layer's multiply-adds per cycle at 90% (gmtool-bench layers).
  train       training images/s: `gmtool train` (one epoch, batch 128, SGD Nesterov, no augmentation)
              vs TensorFlow 2.15 `model.fit` (benchmarks/tf_fit.py), MobileNet alpha 0.5 and 1.0.
  sweep       a 48-point one-shot sweep (12 betas x 4 gammas) on MobileNet alpha 1.0, --sweep-n
              gradient images (data_batch_5) and as many test images: `gmtool sweep` vs
              benchmarks/sweep_tf.py (one TensorFlow gradient pass, NumPy masks, set_weights and
              model.evaluate per point), both whole processes, with the largest top-1 difference.
  memory      peak resident memory of `gmtool eval` and `gmtool grad` over 1,000 and 10,000
              images (it must not grow with the image count).

--baseline PATH adds an older gmtool binary (e.g. a release build of an earlier commit) beside the
current one in the prune and train sections, timed in the same run, to check a change is no slower.

Everything is written under bench-out/ (ignored by git); ../shared stays read-only.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "bench-out")
PEERS = os.path.join(OUT, "peers")
GMTOOL = os.path.join(ROOT, ".build", "release", "gmtool")
PY = sys.executable


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


def timed(cmd, repeats):
    times = []
    for _ in range(repeats + 1):  # one warm-up (page cache)
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - t0)
    times = times[1:]
    return min(times), statistics.median(times)


def prepare_peers():
    """Copies ../shared/bench to bench-out/peers and writes the MobileNet checkpoints once."""
    src = os.path.join(ROOT, "..", "shared", "bench")
    os.makedirs(PEERS, exist_ok=True)
    for name in os.listdir(src):
        if name.endswith(".py"):
            shutil.copy(os.path.join(src, name), PEERS)
    if not os.path.exists(os.path.join(PEERS, "models", "manifest.json")):
        print("writing MobileNet checkpoints with TensorFlow 2.15 (make_models.py) ...", flush=True)
        run([PY, os.path.join(PEERS, "make_models.py")], env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    return os.path.join(PEERS, "models")


def section_stats(models, repeats):
    model = os.path.join(models, "mobilenet_a1.0_top.h5")
    reader = os.path.join(OUT, "h5py_read_all.py")
    with open(reader, "w") as f:
        f.write(
            "import sys, h5py, numpy as np\n"
            "n = 0; nz = 0\n"
            "with h5py.File(sys.argv[1], 'r') as f:\n"
            "    g = f['model_weights']\n"
            "    for layer in g.attrs['layer_names']:\n"
            "        layer = layer.decode() if isinstance(layer, bytes) else layer\n"
            "        for w in g[layer].attrs['weight_names']:\n"
            "            w = w.decode() if isinstance(w, bytes) else w\n"
            "            a = g[layer][w][()]; n += a.size; nz += int(np.count_nonzero(a))\n"
            "print(n, nz)\n")
    size = os.path.getsize(model)
    g = timed([GMTOOL, "stats", model], repeats)
    h = timed([PY, reader, model], repeats)
    total = json.loads(run([GMTOOL, "stats", model, "--json"]).stdout)["total_parameters"]
    check = run([PY, reader, model]).stdout.split()
    print(f"\n== stats: {os.path.basename(model)} ({size / 1e6:.1f} MB, {total:,} parameters; h5py counts {int(check[0]):,})")
    print(f"{'tool':<34}{'best s':>10}{'median s':>10}")
    print(f"{'gmtool stats (whole process)':<34}{g[0]:>10.3f}{g[1]:>10.3f}")
    print(f"{'python + h5py read all weights':<34}{h[0]:>10.3f}{h[1]:>10.3f}")
    print(f"gmtool is {h[0] / g[0]:.1f}x faster (best of {repeats})")
    return {"gmtool_s": g, "h5py_s": h, "parameters": total}


def write_cifar_bin(path, n, seed):
    """The peers' images (bench_peers.make_data: uint8 uniform, seed) in CIFAR-10 binary layout."""
    import numpy as np
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)
    y = rng.integers(0, 10, size=(n,), dtype=np.int64)
    rec = np.concatenate([y.astype(np.uint8)[:, None], x.transpose(0, 3, 1, 2).reshape(n, -1)], axis=1)
    rec.tofile(path)


def macs_per_image(model):
    """Multiply-accumulates of one forward pass, from the layer shapes Keras reports."""
    code = (
        "import sys, json, os\n"
        "os.environ['TF_CPP_MIN_LOG_LEVEL']='3'\n"
        "import tensorflow as tf\n"
        "m = tf.keras.models.load_model(sys.argv[1], compile=False)\n"
        "t = 0\n"
        "for l in m.layers:\n"
        "    c = l.__class__.__name__; o = l.output_shape\n"
        "    if c == 'Conv2D':\n"
        "        k = l.kernel.shape; t += o[1]*o[2]*k[0]*k[1]*k[2]*k[3]\n"
        "    elif c == 'DepthwiseConv2D':\n"
        "        k = l.depthwise_kernel.shape; t += o[1]*o[2]*k[0]*k[1]*k[2]*k[3]\n"
        "    elif c == 'Dense':\n"
        "        k = l.kernel.shape; t += k[0]*k[1]\n"
        "print(t)\n")
    return int(run([PY, "-c", code, model]).stdout.split()[-1])


def sgemm_gflops():
    """This machine's practical peak: OpenBLAS sgemm 2048^3 on both cores, via NumPy."""
    code = ("import numpy as np, time\n"
            "a = np.random.rand(2048, 2048).astype(np.float32); b = a.copy(); a @ b\n"
            "best = min((lambda t0: (a @ b, time.perf_counter() - t0)[1])(time.perf_counter()) for _ in range(5))\n"
            "print(2 * 2048**3 / best / 1e9)\n")
    return float(run([PY, "-c", code]).stdout.split()[-1])


# The throughput section's other families (benchmarks/make_family_models.py), label and file.
FAMILY_MODELS = (("MobileNetV2 1.0", "mobilenetv2_a1.0.h5"), ("ResNet-20", "resnet20.h5"))


def family_models():
    """Writes MobileNetV2 and ResNet-20 with TensorFlow 2.15 once, under bench-out/families."""
    folder = os.path.join(OUT, "families")
    if not all(os.path.exists(os.path.join(folder, name)) for _, name in FAMILY_MODELS):
        print("writing MobileNetV2 and ResNet-20 with TensorFlow 2.15 (make_family_models.py) ...", flush=True)
        run([PY, os.path.join(ROOT, "benchmarks", "make_family_models.py"), folder], env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    return folder


def gmtool_rate(model, kind, data, repeats):
    """Best images/s of `gmtool eval` (inference) or `gmtool grad` (gradient) over `data`."""
    best = 0.0
    for _ in range(repeats + 1):
        cmd = [GMTOOL, "eval" if kind == "inference" else "grad", model, "--data", data, "--json", "--quiet"]
        if kind == "gradient":
            cmd += ["-o", os.path.join(OUT, "grads.h5")]
        best = max(best, json.loads(run(cmd).stdout)["images_per_second"])
    return best


def section_throughput(models, n, repeats, with_torch):
    data = os.path.join(OUT, f"random_{n}.bin")
    write_cifar_bin(data, n, seed=0)
    peers_out = os.path.join(OUT, "results-peers.json")
    sections = "tf,torch" if with_torch else "tf"
    print(f"\n== throughput: {n} images, batch 100, best of {repeats} (peers: bench_peers.py --sections {sections}; "
          f"MobileNetV2 and ResNet-20: benchmarks/tf_infer.py)", flush=True)
    run([PY, os.path.join(PEERS, "bench_peers.py"), "--sections", sections, "--no-xla", "--n", str(n),
         "--repeats", str(repeats), "--out", peers_out], env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    peers = json.load(open(peers_out))
    rows = {}
    for r in peers.get("results", peers if isinstance(peers, list) else []):
        if isinstance(r, dict) and "images_per_s" in r:
            rows[(r["section"], r["name"], float(r["alpha"]))] = r["images_per_s"]

    def peer(section, alpha, kind):
        keys = [k for k in rows if k[0] == section and k[2] == alpha and (("grad" in k[1]) == (kind == "gradient"))
                and "xla" not in k[1] and "predict" not in k[1]]
        return rows[keys[0]] if keys else float("nan")

    # (label, checkpoint, TensorFlow's rate for a pass, PyTorch's)
    lines = [(f"MobileNet {alpha}", os.path.join(models, f"mobilenet_a{alpha}_top.h5"),
              lambda kind, alpha=alpha: peer("tf", alpha, kind), lambda kind, alpha=alpha: peer("torch", alpha, kind))
             for alpha in (1.0, 0.5)]
    folder = family_models()
    for label, name in FAMILY_MODELS:
        path = os.path.join(folder, name)
        lines.append((label, path,
                      lambda kind, path=path: json.loads(run([PY, os.path.join(ROOT, "benchmarks", "tf_infer.py"), path, data, "100", str(n), kind],
                                                             env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}).stdout)["images_per_second"],
                      lambda kind: float("nan")))
    peak = sgemm_gflops()
    results = {"sgemm_gflops": peak, "rows": []}
    print(f"{'model':<17}{'pass':<11}{'gmtool img/s':>14}{'TF img/s':>12}{'torch img/s':>13}{'gmtool GFLOP/s':>16}{'% of sgemm':>12}")
    for label, model, tf_rate, torch_rate in lines:
        macs = macs_per_image(model)
        for kind in ("inference", "gradient"):
            best = gmtool_rate(model, kind, data, repeats)
            tf_ips, torch_ips = tf_rate(kind), torch_rate(kind)
            # Backward costs about twice the forward (input and weight gradients).
            flops = 2 * macs * (1 if kind == "inference" else 3)
            gflops = best * flops / 1e9
            print(f"{label:<17}{kind:<11}{best:>14,.0f}{tf_ips:>12,.0f}{torch_ips:>13,.0f}{gflops:>16.1f}{100 * gflops / peak:>11.0f}%", flush=True)
            results["rows"].append({"model": label, "pass": kind, "gmtool": best, "tf": tf_ips, "torch": torch_ips,
                                    "macs_per_image": macs, "gmtool_gflops": gflops})
    print(f"machine sgemm rate (NumPy/OpenBLAS 2048^3, 2 cores): {peak:.0f} GFLOP/s; FLOPs counted as 2 x MACs "
          f"(gradient pass: 3x the forward)")
    return results


def section_rule(models, repeats):
    model = os.path.join(models, "mobilenet_a1.0_top.h5")
    bench = os.path.join(ROOT, ".build", "release", "gmtool-bench")
    mine = json.loads(run([bench, "rule", model, "--repeats", str(repeats)]).stdout)
    peers_out = os.path.join(OUT, "results-numpy.json")
    run([PY, os.path.join(PEERS, "bench_peers.py"), "--sections", "numpy", "--repeats", str(repeats), "--out", peers_out],
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    peers = json.load(open(peers_out))
    numpy_rows = [r for r in peers.get("results", []) if isinstance(r, dict) and r.get("section") == "numpy" and "Algorithm 1" in r.get("name", "")]
    print(f"\n== rule: {mine['params']:,} float32 weights in {mine['arrays']} tensors, ~{100 * mine['pruned_fraction']:.0f}% pruned, best of {repeats}")
    print(f"{'implementation':<46}{'ms':>9}{'vs gmtool':>11}")
    ref = mine["rule_parallel_s"]
    print(f"{'gmtool rule, ' + str(mine['threads']) + ' threads (as gmtool prune runs it)':<46}{1e3 * ref:>9.1f}{1:>10.1f}x")
    print(f"{'gmtool rule, 1 thread':<46}{1e3 * mine['rule_s']:>9.1f}{mine['rule_s'] / ref:>10.1f}x")
    for r in numpy_rows:
        print(f"{r['name'].replace('(d) ', '') + ' (1 thread)':<46}{1e3 * r['best_s']:>9.1f}{r['best_s'] / ref:>10.1f}x")
    print(f"{'memcpy of w, g and mask, 1 thread':<46}{1e3 * mine['copy_s']:>9.1f}{mine['copy_s'] / ref:>10.1f}x")
    print("(gmtool also reads and writes the existing mask; NumPy's version only writes one)")
    return {"gmtool": mine, "numpy": numpy_rows}


def section_prune(models, repeats, baseline):
    model = os.path.join(models, "mobilenet_a1.0_top.h5")
    data = os.path.join(ROOT, "..", "shared", "data", "cifar10-jpeg", "data_batch_5.bin")

    def prune_cmd(binary):
        return [binary, "prune", model, "--beta", "0.05", "--gamma", "0.001", "--data", data,
                "-o", os.path.join(OUT, "pruned-gmtool.h5"), "--quiet"]
    mine = prune_cmd(GMTOOL)
    theirs = [PY, os.path.join(ROOT, "benchmarks", "prune_tf.py"), model, data, os.path.join(OUT, "pruned-tf.h5"), "0.05", "0.001"]
    g = timed(mine, repeats)
    old = timed(prune_cmd(baseline), repeats) if baseline else None
    t = timed(theirs, repeats)
    a = json.loads(run(mine + ["--json"]).stdout)["pruned_now"]
    b = int(run(theirs).stdout.split()[-1])
    print(f"\n== prune: MobileNet alpha 1.0, beta 0.05, gamma 0.001, 10,000 validation images (whole processes)")
    print(f"{'tool':<40}{'best s':>9}{'median s':>10}{'pruned':>12}")
    print(f"{'gmtool prune':<40}{g[0]:>9.2f}{g[1]:>10.2f}{a:>12,}")
    if old:
        a_old = json.loads(run(prune_cmd(baseline) + ["--json"]).stdout)["pruned_now"]
        print(f"{'gmtool prune (baseline binary)':<40}{old[0]:>9.2f}{old[1]:>10.2f}{a_old:>12,}")
    print(f"{'TensorFlow 2.15 + NumPy + h5py script':<40}{t[0]:>9.2f}{t[1]:>10.2f}{b:>12,}")
    print(f"gmtool is {t[0] / g[0]:.1f}x faster; pruned counts differ by {abs(a - b):,} "
          f"(weights whose |g| lies near gamma, where the two tools' float32 gradients differ)")
    return {"gmtool_s": g, "baseline_s": old, "tf_s": t, "pruned_gmtool": a, "pruned_tf": b}


def pruned_model(models, sparsity):
    """MobileNet alpha 1.0 with every kernel magnitude-pruned to `sparsity` (as the peer script's
    CSR section does; a global threshold on these random-init weights would empty whole layers),
    and its CSR export."""
    dense = os.path.join(OUT, f"mobilenet_a1.0_{int(round(sparsity * 100))}pl.h5")
    sparse = dense.replace(".h5", ".csr.h5")
    if not os.path.exists(sparse):
        run([GMTOOL, "prune", os.path.join(models, "mobilenet_a1.0_top.h5"), "--target-sparsity", str(sparsity), "--per-layer",
             "-o", dense, "--json"])
        run([GMTOOL, "export", dense, "-o", sparse, "--json"])
    return dense, sparse


def section_export(models, repeats):
    dense, _ = pruned_model(models, 0.9)
    out = os.path.join(OUT, "gmtool-export.csr.h5")
    best = float("inf")
    report = None
    for _ in range(repeats + 1):
        report = json.loads(run([GMTOOL, "export", dense, "-o", out, "--json"]).stdout)
        best = min(best, report["seconds"])
    theirs = json.loads(run([PY, os.path.join(ROOT, "benchmarks", "export_scipy.py"), dense, os.path.join(OUT, "scipy-export.h5"),
                             "--repeats", str(repeats)]).stdout)
    print(f"\n== export: MobileNet alpha 1.0, every kernel 90% sparse ({os.path.getsize(dense) / 1e6:.2f} MB dense .h5), best of {repeats}")
    print(f"{'':<44}{'file MB':>9}{'kernels MB':>12}{'seconds':>10}")
    print(f"{'gmtool export --csr (whole model)':<44}{report['output_file_bytes'] / 1e6:>9.2f}{report['stored_kernel_bytes'] / 1e6:>12.2f}{best:>10.3f}")
    print(f"{'scipy CSR + h5py gzip 4 (kernels only)':<44}{theirs['file_bytes'] / 1e6:>9.2f}{theirs['file_bytes'] / 1e6:>12.2f}{theirs['seconds']:>10.3f}")
    print(f"(gmtool: deflate + shuffle, int32 indices, every tensor and the model config; scipy round trip ok: {theirs['roundtrip_ok']};"
          f" bitmask would need {report['bitmask_bytes'] / 1e6:.2f} MB, CSR {report['csr_bytes'] / 1e6:.2f} MB before compression)")
    return {"gmtool": report, "gmtool_best_s": best, "scipy": theirs}


def eval_ips(model, data, batch, extra=()):
    return json.loads(run([GMTOOL, "eval", model, "--data", data, "--batch-size", str(batch), "--json", *extra]).stdout)["images_per_second"]


def litert_python():
    """A scratch venv with ai-edge-litert (bench-out/venv-litert), or None where pip cannot reach it."""
    venv = os.path.join(OUT, "venv-litert")
    py = os.path.join(venv, "bin", "python")
    if not os.path.exists(py):
        subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    if subprocess.run([py, "-c", "import ai_edge_litert"], capture_output=True).returncode != 0:
        if subprocess.run([py, "-m", "pip", "install", "-q", "ai-edge-litert", "numpy<2"], capture_output=True).returncode != 0:
            return None
    return py


def litert_ips(py, model, data, batch, images):
    """LiteRT images/s on `model` converted by TF 2.15's tf.lite, dense and with EXPERIMENTAL_SPARSITY."""
    out = {}
    for mode in ("dense", "sparse"):
        tfl = model.replace(".h5", f".{mode}.tflite")
        if not os.path.exists(tfl):
            run([PY, os.path.join(ROOT, "benchmarks", "tflite_convert.py"), model, tfl, mode])
        out[mode] = json.loads(run([py, os.path.join(ROOT, "benchmarks", "litert_infer.py"), tfl, data, str(batch), str(images)]).stdout)["images_per_second"]
    return out


def section_sparse(models, n, repeats, litert):
    """Break-even table: every kernel of MobileNet alpha 1.0 magnitude-pruned to each sparsity,
    gmtool's export run with --kernels auto (the default) and sparse, against gmtool on the
    pruned .h5 (dense), TensorFlow 2.15 and (with --litert) LiteRT, at batch 1 and 100."""
    py_litert = litert_python() if litert else None
    if litert and not py_litert:
        print("(ai-edge-litert could not be installed: its columns are left empty)")
    print(f"\n== sparse inference: MobileNet alpha 1.0, every kernel pruned to the sparsity shown, 32x32, best of {repeats}")
    print("   (batch 1: 500 images; batch 100: %d images; images/s of whole `gmtool eval` passes, its own timer)" % n)
    head = f"{'sparsity':<9}{'batch':>6}{'auto':>9}{'sparse':>9}{'dense':>9}{'auto/dense':>11}{'TF 2.15':>9}"
    if py_litert:
        head += f"{'LiteRT':>9}{'LiteRT sp':>11}"
    print(head)
    rows = []
    tf_rate = {}
    for sparsity in (0.5, 0.7, 0.8, 0.9, 0.95):
        dense, sparse = pruned_model(models, sparsity)
        for batch in (1, 100):
            images = min(n, 500) if batch == 1 else n
            d = os.path.join(OUT, f"random_{images}.bin")
            if not os.path.exists(d):
                write_cifar_bin(d, images, seed=0)
            a_ips = max(eval_ips(sparse, d, batch) for _ in range(repeats))
            s_ips = max(eval_ips(sparse, d, batch, ["--kernels", "sparse"]) for _ in range(repeats))
            d_ips = max(eval_ips(dense, d, batch) for _ in range(repeats))
            if batch not in tf_rate or sparsity == 0.9:
                tf_rate[batch] = json.loads(run([PY, os.path.join(ROOT, "benchmarks", "tf_infer.py"), dense, d, str(batch), str(images)]).stdout)["images_per_second"]
            row = {"sparsity": sparsity, "batch": batch, "auto": a_ips, "sparse": s_ips, "dense": d_ips, "tf": tf_rate[batch]}
            line = f"{sparsity:<9.2f}{batch:>6}{a_ips:>9,.0f}{s_ips:>9,.0f}{d_ips:>9,.0f}{a_ips / d_ips:>10.2f}x{tf_rate[batch]:>9,.0f}"
            if py_litert:
                lite = litert_ips(py_litert, dense, d, batch, images)
                row["litert"], row["litert_sparse"] = lite["dense"], lite["sparse"]
                line += f"{lite['dense']:>9,.0f}{lite['sparse']:>11,.0f}"
            print(line, flush=True)
            rows.append(row)
    print("(TensorFlow runs the pruned .h5 dense; its time does not depend on the zeros, so it is timed at 50% and 90%.)")
    layers = sparse_layer_bounds(models)
    return {"rows": rows, "layers": layers}


def sparse_layer_bounds(models):
    """Per layer at 90%: multiply-adds per cycle of the sparse and dense kernels on one core, from
    `gmtool-bench layers` (the nominal clock from /proc/cpuinfo; Zen 4 issues at most 16 float32
    FMAs per cycle: two 256-bit FMA pipes)."""
    _, sparse = pruned_model(models, 0.9)
    mhz = max(float(l.split(":")[1]) for l in open("/proc/cpuinfo") if l.startswith("cpu MHz"))
    bench = os.path.join(ROOT, ".build", "release", "gmtool-bench")
    print(f"\n== sparse layers at 90%, one core: FMAs per cycle at {mhz:.0f} MHz (peak 16), stored FMAs for sparse, all for dense")
    print(f"{'layer':<14}{'rows':>7}{'in x out':>12}{'b1 sparse':>11}{'b1 dense':>10}{'b100 sparse':>13}{'b100 dense':>12}{'auto b1/b100':>14}")
    out = []
    per = {}
    for batch in (1, 100):
        for line in run([bench, "layers", sparse, "--batch", str(batch), "--repeats", "5"]).stdout.splitlines():
            r = json.loads(line)
            if "layer" not in r:
                continue
            cycles = mhz * 1e6
            r["sparse_fma_per_cycle"] = r["rows"] * r["stored"] / r["sparse_s"] / cycles
            r["dense_fma_per_cycle"] = r["rows"] * r["inputs"] * r["outputs"] / r["dense_s"] / cycles
            per.setdefault(r["layer"], {})[batch] = r
            out.append(r)
    for name, b in per.items():
        one, hundred = b[1], b[100]
        print(f"{name:<14}{hundred['rows']:>7}{str(one['inputs']) + 'x' + str(one['outputs']):>12}"
              f"{one['sparse_fma_per_cycle']:>11.2f}{one['dense_fma_per_cycle']:>10.2f}"
              f"{hundred['sparse_fma_per_cycle']:>13.2f}{hundred['dense_fma_per_cycle']:>12.2f}"
              f"{('S' if one['auto_sparse'] else 'D') + '/' + ('S' if hundred['auto_sparse'] else 'D'):>14}")
    return out


def section_train(models, baseline):
    folder = os.path.join(ROOT, "..", "shared", "data", "cifar10-jpeg")
    print("\n== training: 40,000 images (data_batch_1-4), batch 128, SGD Nesterov momentum 0.9, no augmentation")
    print(f"{'model':<26}{'gmtool img/s':>14}" + (f"{'baseline img/s':>16}" if baseline else "") + f"{'TF fit img/s':>14}")
    rows = []

    def train_rate(binary, model):
        out = os.path.join(OUT, "train-bench.h5")
        run([binary, "train", model, "--data", folder, "--epochs", "1", "--batch-size", "128", "--lr", "0.01", "--nesterov",
             "--no-augment", "-o", out, "--quiet", "--log", os.path.join(OUT, "train-bench.csv")])
        return json.load(open(os.path.join(OUT, "train-bench.json")))[-1]["train_images_per_second"]
    for alpha in (0.5, 1.0):
        model = os.path.join(models, f"mobilenet_a{alpha}_top.h5")
        mine = train_rate(GMTOOL, model)
        old = train_rate(baseline, model) if baseline else None
        theirs = json.loads(run([PY, os.path.join(ROOT, "benchmarks", "tf_fit.py"), model, folder, "128"]).stdout)["images_per_second"]
        print(f"{'MobileNet alpha ' + str(alpha):<26}{mine:>14,.0f}" + (f"{old:>16,.0f}" if old else "") + f"{theirs:>14,.0f}")
        rows.append({"alpha": alpha, "gmtool": mine, "baseline": old, "tf": theirs})
    print("(gmtool: the training steps of its first epoch; TensorFlow: model.fit's second epoch, after tracing)")
    return rows


def section_sweep(models, n, model=None):
    model = model or os.path.join(models, "mobilenet_a1.0_top.h5")
    data = os.path.join(ROOT, "..", "shared", "data", "cifar10-jpeg")
    betas = ",".join(f"{0.01 + (0.3 - 0.01) * i / 11:.6g}" for i in range(12))
    gammas = "0.0001,0.001,0.01,inf"
    folder = os.path.join(OUT, "sweep-gmtool")
    shutil.rmtree(folder, ignore_errors=True)
    mine = [GMTOOL, "sweep", model, "--beta", betas, "--gamma", gammas, "--data", os.path.join(data, "data_batch_5.bin"),
            "--eval-data", os.path.join(data, "test_batch.bin"), "--limit", str(n), "--quiet", "--json", "-o", folder]
    theirs = [PY, os.path.join(ROOT, "benchmarks", "sweep_tf.py"), model, os.path.join(data, "data_batch_5.bin"),
              os.path.join(data, "test_batch.bin"), str(n), betas, gammas]
    t0 = time.perf_counter()
    a = json.loads(run(mine).stdout)
    g = time.perf_counter() - t0
    t0 = time.perf_counter()
    b = json.loads(run(theirs).stdout)
    t = time.perf_counter() - t0
    diffs = [abs(p["top1"] - q["top1"]) for p, q in zip(a["points"], b["points"])]
    print(f"\n== sweep: {os.path.basename(model)}, 48 points (12 beta x 4 gamma), {n:,} gradient + {n:,} test images (whole processes)")
    print(f"{'tool':<44}{'wall s':>9}{'gradient s':>12}")
    print(f"{'gmtool sweep':<44}{g:>9.2f}{a['gradient_seconds']:>12.2f}")
    print(f"{'TensorFlow + NumPy (set_weights, evaluate)':<44}{t:>9.2f}{b['gradient_seconds']:>12.2f}")
    print(f"gmtool is {t / g:.1f}x faster; largest top-1 difference over the points {max(diffs) * 100:.2f} points "
          f"(float32 gradients near gamma and the two engines' rounding)")
    return {"gmtool_s": g, "tf_s": t, "max_top1_diff": max(diffs)}


def section_memory(models):
    model = os.path.join(models, "mobilenet_a1.0_top.h5")
    data = os.path.join(ROOT, "..", "shared", "data", "cifar10-jpeg")
    print("\n== memory: peak resident set of whole gmtool processes (MobileNet alpha 1.0, batch 100)")
    print(f"{'command':<10}{'1,000 images':>16}{'10,000 images':>16}")
    results = {}
    for command in ("eval", "grad"):
        peaks = []
        for n in (1000, 10000):
            cmd = ["/usr/bin/time", "-f", "%M", GMTOOL, command, model, "--data", data, "--split", "validation",
                   "--limit", str(n), "--quiet"] + (["-o", os.path.join(OUT, "grads.h5")] if command == "grad" else [])
            p = subprocess.run(cmd, check=True, capture_output=True, text=True)
            peaks.append(int(p.stderr.strip().splitlines()[-1]) / 1024)
        print(f"{command:<10}{peaks[0]:>13.0f} MB{peaks[1]:>13.0f} MB")
        results[command] = peaks
    return results


def sections_only(text, name):
    return text.split(",") == [name]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sections", default="stats,throughput,rule,prune,export,sparse,train,memory")
    ap.add_argument("--n", type=int, default=2000, help="images for the throughput section")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--litert", action="store_true", help="add LiteRT (ai-edge-litert, pip-installed into bench-out/venv-litert) to the sparse section")
    ap.add_argument("--sweep-n", type=int, default=10000, help="gradient and test images for the sweep section")
    ap.add_argument("--sweep-model", help="checkpoint for the sweep section (default: MobileNet alpha 1.0)")
    ap.add_argument("--baseline", help="an older gmtool binary, timed beside this one in prune and train")
    args = ap.parse_args()
    os.makedirs(OUT, exist_ok=True)
    models = None if args.sweep_model and sections_only(args.sections, "sweep") else prepare_peers()
    try:
        import torch  # noqa: F401
        with_torch = True
    except ImportError:
        with_torch = False
        print("(PyTorch not installed in this environment: its column is left empty)")
    results = {}
    sections = args.sections.split(",")
    if "stats" in sections:
        results["stats"] = section_stats(models, args.repeats)
    if "throughput" in sections:
        results["throughput"] = section_throughput(models, args.n, args.repeats, with_torch)
    if "rule" in sections:
        results["rule"] = section_rule(models, args.repeats)
    if "prune" in sections:
        results["prune"] = section_prune(models, args.repeats, args.baseline)
    if "export" in sections:
        results["export"] = section_export(models, args.repeats)
    if "sparse" in sections:
        results["sparse"] = section_sparse(models, args.n, args.repeats, args.litert)
    if "train" in sections:
        results["train"] = section_train(models, args.baseline)
    if "sweep" in sections:
        results["sweep"] = section_sweep(models, args.sweep_n, args.sweep_model)
    if "memory" in sections:
        results["memory"] = section_memory(models)
    with open(os.path.join(OUT, "results.json"), "w") as f:
        json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
