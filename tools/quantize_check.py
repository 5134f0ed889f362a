#!/usr/bin/env python3
"""Checks wrnc's int8 (QDQ) and float16 ONNX exports with onnx and onnxruntime, side by side
with onnxruntime's own quantize_static. Optional in CI (needs onnx, onnxruntime, numpy,
Pillow). See docs/onnx.md ("int8 and float16 files").

  tools/quantize_check.py --run RUN_DIR [--wrnc target/release/wrnc] [--out DIR]
                          [--threads 2] [--rounds 5] [--skip-wrn]

RUN_DIR is a `wrnc train specs/quickstart.yaml --out RUN_DIR` run directory. The check:
 1. exports its weights with `wrnc export --quantize int8 --dtype fp16` (wrnc's own report,
    accuracy in tract) and runs `wrnc verify` on both files;
 2. runs onnx.checker (full check) on the float, int8 and float16 files;
 3. runs all three in onnxruntime on all 1,797 digits and on the test split: accuracy,
    top-1 agreement with the float file, and onnxruntime's accuracy next to tract's;
 4. lists the nodes of onnxruntime's optimised graph (SessionOptions.optimized_model_filepath)
    that run as integer kernels;
 5. quantizes the float file with onnxruntime's quantize_static (QDQ, per channel, uint8
    activations, int8 weights, 256 calibration images) and reports the same numbers;
 6. exports WRN-16-4 (fresh weights, calibrated with --calibration-dir on generated images),
    verifies it, and times int8 against float32 in onnxruntime at batch 64 (interleaved).
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

import numpy as np
import onnx
import onnxruntime as ort

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INTEGER_OPS = ("QLinear", "QGemm", "ConvInteger", "MatMulInteger", "DynamicQuantize")


def sh(cmd, check=True):
    print("$ " + " ".join(cmd), flush=True)
    r = subprocess.run(cmd, capture_output=True, text=True)
    out = r.stdout + r.stderr
    print(out.rstrip(), flush=True)
    if check and r.returncode != 0:
        sys.exit(f"command failed with exit code {r.returncode}")
    return out, r.returncode


def digits():
    raw = np.fromfile(os.path.join(ROOT, "crates/data/assets/digits.bin"), dtype=np.uint8)
    raw = raw.reshape(1797, 65)
    px = ((raw[:, :64].astype(np.uint32) * 255 + 8) // 16).astype(np.float32)
    return px.reshape(-1, 1, 8, 8), raw[:, 64].astype(np.int64)


def normalise(model_path, px):
    meta = {p.key: p.value for p in onnx.load(model_path, load_external_data=False).metadata_props}
    n = json.loads(meta["normalization"])
    x = px * n["scale"]
    c = x.shape[1]
    if n["mode"] == "per_pixel_mean":
        return (x - np.asarray(n["mean_image"], np.float32).reshape(1, c, *x.shape[2:])).astype(np.float32)
    mean = np.asarray(n["mean"], np.float32).reshape(1, c, 1, 1)
    std = np.asarray(n["std"], np.float32).reshape(1, c, 1, 1)
    return ((x - mean) / std).astype(np.float32)


def session(path, threads, optimized=None):
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if optimized:
        so.optimized_model_filepath = optimized
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def logits(sess, x, batch=64):
    out = []
    for i in range(0, len(x), batch):
        out.append(sess.run(["logits"], {"input": x[i:i + batch]})[0])
    return np.concatenate(out)


def integer_nodes(path, threads):
    opt = path + ".ort-optimized.onnx"
    session(path, threads, optimized=opt)
    m = onnx.load(opt)
    ops = [n.op_type for n in m.graph.node]
    ints = [o for o in ops if o.startswith(INTEGER_OPS)]
    os.remove(opt)
    return len(ints), len(ops), sorted(set(ints)), sorted(set(ops) - set(ints))


class Reader:
    """Calibration images for onnxruntime's quantize_static, one at a time."""

    def __init__(self, x):
        self.it = iter([{"input": x[i:i + 1]} for i in range(len(x))])

    def get_next(self):
        return next(self.it, None)

    def rewind(self):
        pass


def ort_quantize(float_path, calib, out_path):
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    quantize_static(float_path, out_path, Reader(calib), quant_format=QuantFormat.QDQ,
                    per_channel=True, activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax)


def report(name, path, float_path, x, y, test, threads):
    f = logits(session(float_path, threads), x)
    q = logits(session(path, threads), x)
    agree = (f.argmax(1) == q.argmax(1)).mean()
    acc = (q[test].argmax(1) == y[test]).mean()
    ints, total, int_ops, float_ops = integer_nodes(path, threads)
    size = os.path.getsize(path) / os.path.getsize(float_path)
    row = dict(file=name, size_ratio=round(size, 3), agreement_all=float(agree),
               agree_count=int((f.argmax(1) == q.argmax(1)).sum()),
               test_accuracy_ort=float(acc), max_logit_diff=float(np.abs(f - q).max()),
               integer_nodes=ints, optimized_nodes=total, integer_ops=int_ops)
    print(json.dumps(row), flush=True)
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", required=True, help="run directory of specs/quickstart.yaml")
    ap.add_argument("--wrnc", default=os.path.join(ROOT, "target/release/wrnc"))
    ap.add_argument("--out", default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--skip-wrn", action="store_true")
    a = ap.parse_args()
    out = a.out or tempfile.mkdtemp(prefix="wrnc-quantize-")
    os.makedirs(out, exist_ok=True)
    spec = os.path.join(ROOT, "specs/quickstart.yaml")
    weights = os.path.join(a.run, "last.safetensors")
    fp = os.path.join(out, "qs.onnx")
    text, _ = sh([a.wrnc, "export", spec, "--weights", weights, "-o", fp,
                  "--quantize", "int8", "--dtype", "fp16"])
    int8, f16 = os.path.join(out, "qs.int8.onnx"), os.path.join(out, "qs.fp16.onnx")
    tract = {}
    for m in re.finditer(r"\(tract\): float32 ([\d.]+)%, (int8|float16) ([\d.]+)%", text):
        tract["float32"], tract[m.group(2)] = float(m.group(1)), float(m.group(3))
    for p in (int8, f16):
        sh([a.wrnc, "verify", p, "--spec", spec, "--weights", weights], check=False)
    for p in (fp, int8, f16):
        onnx.checker.check_model(onnx.load(p), full_check=True)
        print(f"onnx.checker (full check): {os.path.basename(p)} ok", flush=True)

    px, y = digits()
    x = normalise(fp, px)
    test = np.arange(1797) >= 1797 - 360
    f = logits(session(fp, a.threads), x)
    print(f"float32 in onnxruntime: test accuracy {(f[test].argmax(1) == y[test]).mean():.4f}; "
          f"tract (wrnc export): {tract}", flush=True)
    rows = [report("wrnc int8", int8, fp, x, y, test, a.threads),
            report("wrnc fp16", f16, fp, x, y, test, a.threads)]
    ort_path = os.path.join(out, "qs.ort-int8.onnx")
    train_idx = np.linspace(0, 1797 - 360 - 1, 256).astype(int)
    ort_quantize(fp, x[train_idx], ort_path)
    rows.append(report("onnxruntime quantize_static", ort_path, fp, x, y, test, a.threads))
    for r in rows:
        name = {"wrnc int8": "int8", "wrnc fp16": "float16"}.get(r["file"])
        if name in tract:
            print(f"{r['file']}: test accuracy onnxruntime {100 * r['test_accuracy_ort']:.2f}% "
                  f"vs tract {tract[name]:.2f}%", flush=True)

    if not a.skip_wrn:
        wrn(a, out)


def wrn(a, out):
    from PIL import Image

    spec = os.path.join(ROOT, "specs/wrn-16-4.yaml")
    w = os.path.join(out, "wrn-16-4.safetensors")
    sh([a.wrnc, "init", spec, "-o", w])
    imgs = os.path.join(out, "calib")
    os.makedirs(imgs, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(128):
        # Random pixels: what `wrnc verify` compares on when CIFAR-10 is not on the machine.
        px = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
        Image.fromarray(px).save(f"{imgs}/{i:03d}.png")
    fp = os.path.join(out, "wrn.onnx")
    sh([a.wrnc, "export", spec, "--weights", w, "-o", fp, "--quantize", "int8",
        "--calibration-dir", imgs, "--dtype", "fp16"])
    # tract runs float16 convolutions slowly on x86 (no native f16 arithmetic): fewer images.
    for p, n in (("wrn.int8.onnx", "256"), ("wrn.fp16.onnx", "16")):
        sh([a.wrnc, "verify", os.path.join(out, p), "--spec", spec, "--weights", w,
            "--images", n], check=False)
        onnx.checker.check_model(onnx.load(os.path.join(out, p)), full_check=True)
        print(f"onnx.checker (full check): {p} ok", flush=True)
    q = os.path.join(out, "wrn.int8.onnx")
    ints, total, int_ops, _ = integer_nodes(q, a.threads)
    print(f"WRN-16-4 int8: {ints} of {total} optimised nodes are integer ops {int_ops}; "
          f"size {os.path.getsize(q) / os.path.getsize(fp):.3f}x", flush=True)
    x = rng.standard_normal((64, 3, 32, 32)).astype(np.float32)
    sf, sq = session(fp, a.threads), session(q, a.threads)
    for s in (sf, sq):
        s.run(["logits"], {"input": x})
    times = {"float32": [], "int8": []}
    for _ in range(a.rounds):
        for name, s in (("float32", sf), ("int8", sq)):
            t = time.perf_counter()
            s.run(["logits"], {"input": x})
            times[name].append(time.perf_counter() - t)
    med = {k: float(np.median(v)) for k, v in times.items()}
    load = os.getloadavg()[0]
    print(f"WRN-16-4 batch 64 in onnxruntime ({a.threads} threads, load {load:.1f}): "
          f"float32 {1e3 * med['float32']:.1f} ms, int8 {1e3 * med['int8']:.1f} ms, "
          f"speed-up {med['float32'] / med['int8']:.2f}x", flush=True)


if __name__ == "__main__":
    main()
