#!/usr/bin/env python3
"""LiteRT (ai-edge-litert) inference images/s of a .tflite model at a batch size, 2 threads
(XNNPACK delegate, LiteRT's default), best of 3 passes over the images after one warm-up.

usage: litert_infer.py MODEL.tflite DATA.bin BATCH N
"""
import json
import sys
import time

import numpy as np
from ai_edge_litert.interpreter import Interpreter

model_path, data, batch, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
raw = np.fromfile(data, dtype=np.uint8).reshape(-1, 3073)[:n]
x = raw[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).astype(np.float32) / 255.0
n = len(x) // batch * batch
interpreter = Interpreter(model_path=model_path, num_threads=2)
inp = interpreter.get_input_details()[0]["index"]
out = interpreter.get_output_details()[0]["index"]
interpreter.resize_tensor_input(inp, [batch, 32, 32, 3])
interpreter.allocate_tensors()
best = float("inf")
for rep in range(4):
    t0 = time.perf_counter()
    for i in range(0, n, batch):
        interpreter.set_tensor(inp, x[i:i + batch])
        interpreter.invoke()
        interpreter.get_tensor(out).argmax(axis=1)
    if rep:
        best = min(best, time.perf_counter() - t0)
print(json.dumps({"images_per_second": n / best}))
