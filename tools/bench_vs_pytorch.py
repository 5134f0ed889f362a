"""PyTorch side of tools/bench-vs-pytorch: the same pre-activation WRN as wrnc builds
(3x3 stem, BN-ReLU before each conv, 1x1 projection shortcut when the shape changes, final
BN-ReLU, global average pool, linear), He-normal fan-out convolution init, SGD Nesterov
(lr 0.1, momentum 0.9, weight decay 5e-4), f32, synthetic data. With --bf16: PyTorch's CPU
autocast to bf16 (f32 weights) against wrnc's `train.precision=bf16`.

    python bench_vs_pytorch.py train --width W [--depth 16] [--dropout P] [--batch 128] [--steps 5] [--bf16]
    python bench_vs_pytorch.py export --width W --out FILE   (torch.onnx export, eval mode)
    python bench_vs_pytorch.py ort FILE [--batch 64] [--steps 5]  (onnxruntime inference)
    python bench_vs_pytorch.py all --wrnc BIN [--steps 5] [--rounds 2] [--models M ...] [--bf16]
        (the whole comparison; a model is DEPTH-WIDTH[-dP][@BATCH], default
        16-1 16-4 16-4-d0.3 28-10@32: WRN-16-4 with dropout 0.3, WRN-28-10 at batch 32)

Each prints one JSON line. Threads: torch.set_num_threads($THREADS, default 2)."""
import argparse, json, os, resource, subprocess, sys, tempfile, time


def threads():
    return int(os.environ.get("THREADS", "2"))


def build(depth, width, classes=10, dropout=0.0):
    # The network of tools/torch_wrn_bench.py (next to this file).
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from torch_wrn_bench import WRN

    return WRN(depth, width, classes, dropout)


def cmd_train(a):
    import torch

    torch.set_num_threads(threads())
    torch.manual_seed(0)
    model = build(a.depth, a.width, dropout=a.dropout)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True,
                          weight_decay=5e-4)
    x = torch.randn(a.batch, 3, 32, 32)
    y = torch.randint(0, 10, (a.batch,))
    loss_fn = torch.nn.CrossEntropyLoss()
    model.train()
    for step in range(2 + a.steps):
        if step == 2:
            t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.bf16):
            loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
    dt = time.perf_counter() - t0
    print(json.dumps({"images_per_sec": a.batch * a.steps / dt,
                      "seconds_per_step": dt / a.steps,
                      "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                      "torch": torch.__version__, "threads": torch.get_num_threads(),
                      "bf16": a.bf16}))


def cmd_export(a):
    import torch

    torch.manual_seed(0)
    model = build(a.depth, a.width).eval()
    x = torch.randn(1, 3, 32, 32)
    kw = dict(input_names=["input"], output_names=["logits"],
              dynamic_axes={"input": {0: "n"}, "logits": {0: "n"}}, opset_version=17)
    try:
        torch.onnx.export(model, (x,), a.out, dynamo=False, **kw)
    except TypeError:
        torch.onnx.export(model, (x,), a.out, **kw)
    print(json.dumps({"exported": a.out}))


def cmd_ort(a):
    import numpy as np
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads()
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(a.file, so, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0].name
    x = np.random.default_rng(0).standard_normal((a.batch, 3, 32, 32)).astype(np.float32)
    for step in range(2 + a.steps):
        if step == 2:
            t0 = time.perf_counter()
        sess.run(None, {inp: x})
    dt = time.perf_counter() - t0
    print(json.dumps({"images_per_sec": a.batch * a.steps / dt,
                      "nodes": len(__import__("onnx").load(a.file).graph.node)}))


def run_json(cmd, env):
    out = subprocess.run(cmd, env=env, check=True, stdout=subprocess.PIPE, text=True).stdout
    return json.loads(out)


def median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2]


def torch_version():
    """The installed PyTorch's version, read without importing it."""
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("torch")
    except PackageNotFoundError:
        return "(not installed)"


def parse_model(m):
    """`DEPTH-WIDTH[-dP][@BATCH]` as (depth, width, dropout, batch or None)."""
    batch = None
    if "@" in m:
        m, b = m.split("@")
        batch = int(b)
    parts = m.split("-")
    dropout = float(parts[2][1:]) if len(parts) > 2 else 0.0
    return int(parts[0]), int(parts[1]), dropout, batch


def cmd_all(a):
    """Side by side, alternating wrnc and PyTorch runs (the machine may be shared), the
    median of `rounds` runs each; then onnxruntime on both exports of WRN-16-4."""
    env = dict(os.environ, THREADS=str(threads()), RAYON_NUM_THREADS=str(threads()),
               OMP_NUM_THREADS=str(threads()))
    me = [sys.executable, os.path.abspath(__file__)]
    spec = os.path.join(a.root, "specs", "wrn-16-4.yaml")
    precision = ["--set", "train.precision=bf16"] if a.bf16 else []
    # PyTorch's own figure moves between machines and installs (the same 2.15.0 ran WRN-16-4
    # 4-14% faster on a fresh machine than in the session before), so every table names the
    # release it compared against
    print(f"PyTorch {torch_version()}, threads {threads()}, batch {a.batch} unless noted, "
          f"{a.steps} timed steps, median of {a.rounds} alternating runs"
          + (", bf16 (wrnc train.precision=bf16, PyTorch CPU autocast)" if a.bf16 else ", f32"))
    print(f"{'model':<20} {'wrnc img/s':>11} {'torch img/s':>12} {'ratio':>6} "
          f"{'wrnc MiB':>9} {'torch MiB':>10} {'mem ratio':>9}")
    for m in a.models:
        depth, width, dropout, batch = parse_model(m)
        batch = batch or a.batch
        w_runs, t_runs = [], []
        for _ in range(a.rounds):
            w_runs.append(run_json([a.wrnc, "bench", spec, "--set", f"model.wrn.depth={depth}",
                                    "--set", f"model.wrn.width={width}",
                                    "--set", f"model.wrn.dropout={dropout}",
                                    "--batch", str(batch), "--steps", str(a.steps),
                                    "--no-tract", "--json"] + precision, env))
            t_runs.append(run_json(me + ["train", "--depth", str(depth), "--width", str(width),
                                         "--dropout", str(dropout), "--batch", str(batch),
                                         "--steps", str(a.steps)]
                                  + (["--bf16"] if a.bf16 else []), env))
        wi = median([r["train"]["images_per_sec"] for r in w_runs])
        ti = median([r["images_per_sec"] for r in t_runs])
        wm = max(r["train_peak_rss_bytes"] for r in w_runs) / 2**20
        tm = max(r["peak_rss_bytes"] for r in t_runs) / 2**20
        name = f"WRN-{depth}-{width}" + (f" d{dropout}" if dropout else "") + (
            f" b{batch}" if batch != a.batch else "")
        print(f"{name:<20} {wi:>11.1f} {ti:>12.1f} {wi / ti:>5.2f}x "
              f"{wm:>9.0f} {tm:>10.0f} {wm / tm:>8.2f}x", flush=True)
    if a.no_ort:
        return
    with tempfile.TemporaryDirectory() as d:
        w, ours, theirs = (os.path.join(d, f) for f in ("w.safetensors", "wrnc.onnx", "torch.onnx"))
        subprocess.run([a.wrnc, "init", spec, "-o", w], env=env, check=True,
                       stdout=subprocess.DEVNULL)
        subprocess.run([a.wrnc, "export", spec, "--weights", w, "-o", ours], env=env,
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        run_json(me + ["export", "--width", "4", "--out", theirs], env)
        o_runs, t_runs = [], []
        for _ in range(a.rounds):
            o_runs.append(run_json(me + ["ort", ours, "--steps", str(a.steps)], env))
            t_runs.append(run_json(me + ["ort", theirs, "--steps", str(a.steps)], env))
        oi = median([r["images_per_sec"] for r in o_runs])
        ti = median([r["images_per_sec"] for r in t_runs])
        print(f"onnxruntime WRN-16-4 batch 64: wrnc export {oi:.1f} img/s "
              f"({o_runs[0]['nodes']} nodes), torch.onnx export {ti:.1f} img/s "
              f"({t_runs[0]['nodes']} nodes), ratio {oi / ti:.2f}x")


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train")
    e = sub.add_parser("export")
    for q in (t, e):
        q.add_argument("--depth", type=int, default=16)
        q.add_argument("--width", type=int, required=True)
    t.add_argument("--batch", type=int, default=128)
    t.add_argument("--steps", type=int, default=5)
    t.add_argument("--dropout", type=float, default=0.0)
    t.add_argument("--bf16", action="store_true", help="CPU autocast to bf16")
    e.add_argument("--out", required=True)
    o = sub.add_parser("ort")
    o.add_argument("file")
    o.add_argument("--batch", type=int, default=64)
    o.add_argument("--steps", type=int, default=5)
    al = sub.add_parser("all")
    al.add_argument("--wrnc", required=True)
    al.add_argument("--root", default=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    al.add_argument("--batch", type=int, default=128)
    al.add_argument("--steps", type=int, default=5)
    al.add_argument("--rounds", type=int, default=2)
    al.add_argument("--models", nargs="+", default=["16-1", "16-4", "16-4-d0.3", "28-10@32"])
    al.add_argument("--bf16", action="store_true",
                    help="wrnc train.precision=bf16 against PyTorch's CPU autocast to bf16")
    al.add_argument("--no-ort", action="store_true", help="skip the onnxruntime comparison")
    a = p.parse_args()
    {"train": cmd_train, "export": cmd_export, "ort": cmd_ort, "all": cmd_all}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
