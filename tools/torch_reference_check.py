#!/usr/bin/env python3
"""Independent check of wrnc's training semantics against PyTorch.

Replays one wrnc training run in PyTorch from the same initial weights, on the same batches
(no shuffle, no augmentation), with torch.optim.SGD and F.batch_norm, and compares the
per-step losses (steps.csv) and every tensor of last.safetensors (weights, BN running stats).
The network is read from `wrnc expand`, so any spec works; dropout must be 0.

The spec's (or --set's) train.label_smoothing (F.cross_entropy(label_smoothing=)),
train.grad_clip (torch.nn.utils.clip_grad_norm_), train.optimizer.kind sam (davda54/sam's
SAM, `adaptive` for ASAM, momentum 0 in the second pass's batch norm), adamw
(torch.optim.AdamW) and train.ema (timm ModelEmaV2 update; V3 warm-up) are replayed too; with
EMA, ema.safetensors is compared as well. Example:

    tools/torch_reference_check.py specs/quickstart.yaml --set train.label_smoothing=0.1 \
        --set train.grad_clip=1.0 --set "train.ema={decay: 0.9}"

    tools/torch_reference_check.py SPEC [--epochs N] [--batch-size N] [--wrnc target/release/wrnc]

Set REF_DTYPE=f32 to run PyTorch in f32 (default f64, the exact reference), TORCH_THREADS=N
for PyTorch's thread count (default 2).

Needs torch and numpy (e.g. the venv tools/bench-vs-pytorch makes: target/bench-venv).
Only the embedded digits dataset is supported (its values are read from the wrnc binary's
own training split by re-deriving it from the spec's normalisation on the same data file the
crate embeds: crates/data/assets/digits.bin).
"""
import argparse, json, os, struct, subprocess, sys, tempfile
import numpy as np
import torch
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for k, v in header.items():
        if k == "__metadata__":
            continue
        assert v["dtype"] == "F32", v
        a, b = v["data_offsets"]
        out[k] = np.frombuffer(data[a:b], dtype="<f4").reshape(v["shape"]).copy()
    return out


def digits():
    raw = np.fromfile(os.path.join(ROOT, "crates/data/assets/digits.bin"), dtype=np.uint8)
    raw = raw.reshape(1797, 65)
    px = np.round(raw[:, :64].astype(np.float64) * 255 / 16).astype(np.uint8)
    return px[:1437].reshape(-1, 1, 8, 8), raw[:1437, 64].astype(np.int64)


def run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{r.stderr}")
    return r.stdout


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("spec")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=1437,
                    help="few, large steps (default: the whole training split, one step per "
                         "epoch): f32 rounding differences grow chaotically over many")
    ap.add_argument("--wrnc", default=os.path.join(ROOT, "target/release/wrnc"))
    ap.add_argument("--set", action="append", default=[], help="extra wrnc --set KEY=VALUE")
    a = ap.parse_args()
    dt = torch.float32 if os.environ.get("REF_DTYPE") == "f32" else torch.float64
    torch.set_num_threads(int(os.environ.get("TORCH_THREADS", "2")))
    torch.set_default_dtype(dt)
    tmp = tempfile.mkdtemp(prefix="wrnc-torch-")
    sets = ["--set", f"train.epochs={a.epochs}", "--set", f"train.batch_size={a.batch_size}", "--set", "data.shuffle=false",
            "--set", "data.augment=none", "--set", "data.val_size=0",
            "--set", "train.schedule={kind: constant}", "--set", "train.warmup_epochs=0",
            "--set", "export.onnx=false"]
    for kv in a.set:
        sets += ["--set", kv]
    spec = json.loads(json.dumps(__import__("yaml").safe_load(run([a.wrnc, "expand", a.spec] + sets))))
    assert spec["data"]["dataset"] == "digits", "only the embedded digits dataset is supported"
    init = os.path.join(tmp, "init.safetensors")
    run([a.wrnc, "init", a.spec, "-o", init] + sets)
    out = os.path.join(tmp, "run")
    run([a.wrnc, "train", a.spec, "--init", init, "--out", out, "--quiet", "--device", "cpu"] + sets)
    w0 = read_safetensors(init)
    params = {k: torch.tensor(v, dtype=dt) for k, v in w0.items()}
    trainable = [k for k in params if not k.endswith(("running_mean", "running_var"))]
    for k in trainable:
        params[k].requires_grad_(True)
    opt_cfg = spec["train"]["optimizer"]
    decay = [k for k in trainable if opt_cfg["weight_decay_on"] == "all" or
             (k.endswith(".weight") and params[k].dim() > 1)]
    groups = [{"params": [params[k] for k in decay], "weight_decay": opt_cfg["weight_decay"]},
              {"params": [params[k] for k in trainable if k not in decay], "weight_decay": 0.0}]
    kind = opt_cfg.get("kind", "sgd")
    if kind == "adamw":
        opt = torch.optim.AdamW(groups, lr=opt_cfg["lr"], betas=tuple(opt_cfg.get("betas", (0.9, 0.999))),
                                eps=opt_cfg.get("eps", 1e-8))
    else:
        opt = torch.optim.SGD(groups, lr=opt_cfg["lr"], momentum=opt_cfg["momentum"],
                              dampening=opt_cfg["dampening"], nesterov=opt_cfg["nesterov"])
    tc = spec["train"]
    smoothing = tc.get("label_smoothing", 0.0)
    clip = tc.get("grad_clip")
    rho, adaptive = opt_cfg.get("rho", 0.05), opt_cfg.get("adaptive", False)
    ema_cfg = tc.get("ema")
    ema = {k: v.detach().clone() for k, v in params.items()} if ema_cfg else None
    bn_momentum = [None]  # None: the layer's own; 0.0 in SAM's second pass
    x_all, y_all = digits()
    x = x_all.astype(np.float64) / 255.0
    mode = spec["data"]["normalize"]
    if mode == "mean_std":
        m = x.mean(axis=(0, 2, 3), keepdims=True); s = x.std(axis=(0, 2, 3), keepdims=True)
        x = (x - m) / s
    elif mode == "per_channel_mean":
        x = x - x.mean(axis=(0, 2, 3), keepdims=True)
    elif mode == "per_pixel_mean":
        x = x - x.mean(axis=0, keepdims=True)
    layers = spec["model"]["layers"]

    def forward(xb):
        vals = {"input": xb}
        prev = "input"
        for i, l in enumerate(layers):
            name = l.get("name", f"{l['op']}{i}")
            src = l.get("from", prev)
            srcs = src if isinstance(src, list) else [src]
            h = vals[srcs[0]]
            op = l["op"]
            if op == "conv":
                k = l.get("kernel", 3)
                h = F.conv2d(h, params[name + ".weight"], params.get(name + ".bias"),
                             stride=l.get("stride", 1), padding=l.get("padding", k // 2))
            elif op == "batch_norm":
                h = F.batch_norm(h if h.dim() > 2 else h, params[name + ".running_mean"],
                                 params[name + ".running_var"], params[name + ".weight"],
                                 params[name + ".bias"], training=True,
                                 momentum=l.get("momentum", 0.1) if bn_momentum[0] is None
                                 else bn_momentum[0], eps=l.get("eps", 1e-5))
            elif op == "relu":
                h = F.relu(h)
            elif op == "add":
                h = h + vals[srcs[1]]
            elif op == "avg_pool":
                k = l.get("kernel", 2)
                h = F.avg_pool2d(h, k, l.get("stride", k), l.get("padding", 0),
                                 count_include_pad=False)
            elif op == "global_avg_pool":
                h = h.mean(dim=(2, 3), keepdim=True)
            elif op == "flatten":
                h = h.flatten(1)
            elif op == "linear":
                h = F.linear(h, params[name + ".weight"], params.get(name + ".bias"))
            elif op == "softmax":
                break
            elif op == "dropout":
                sys.exit("dropout must be 0 for this check")
            vals[name] = h
            prev = name
        return h

    bs = spec["train"]["batch_size"]
    losses = []
    for epoch in range(a.epochs):
        for i in range(0, len(x), bs):
            xb = torch.tensor(x[i:i + bs], dtype=dt); yb = torch.tensor(y_all[i:i + bs])
            ps = [params[k] for k in trainable]
            opt.zero_grad()
            loss = F.cross_entropy(forward(xb), yb, label_smoothing=smoothing)
            loss.backward()
            if clip is not None:
                torch.nn.utils.clip_grad_norm_(ps, clip)
            if kind == "sam":
                # davda54/sam first_step / second_step
                with torch.no_grad():
                    norm = torch.norm(torch.stack([((torch.abs(p) if adaptive else 1.0) * p.grad).norm(p=2)
                                                   for p in ps]), p=2)
                    scale = rho / (norm + 1e-12)
                    old = [p.data.clone() for p in ps]
                    for p in ps:
                        p.add_((torch.pow(p, 2) if adaptive else 1.0) * p.grad * scale)
                opt.zero_grad()
                bn_momentum[0] = 0.0
                F.cross_entropy(forward(xb), yb, label_smoothing=smoothing).backward()
                bn_momentum[0] = None
                if clip is not None:
                    torch.nn.utils.clip_grad_norm_(ps, clip)
                with torch.no_grad():
                    for p, o in zip(ps, old):
                        p.data = o
            opt.step()
            losses.append(loss.item())
            if ema is not None:
                n = len(losses)
                d = ema_cfg["decay"]
                if ema_cfg.get("warmup"):
                    s_ = n - 1
                    d = 0.0 if s_ <= 0 else max(min(1 - (1 + s_) ** (-2 / 3), d), 0.0)
                with torch.no_grad():
                    for k, v in params.items():
                        ema[k] = d * ema[k] + (1 - d) * v.detach()
    wl = [float(r.split(",")[3]) for r in open(os.path.join(out, "steps.csv")).read().split("\n")[1:] if r]
    assert len(wl) == len(losses), (len(wl), len(losses))
    rel = max(abs(p - q) / max(abs(q), 1e-12) for p, q in zip(wl, losses))
    print(f"steps: {len(losses)}; losses: first {losses[0]:.6f} (wrnc {wl[0]:.6f}), "
          f"last {losses[-1]:.6f} (wrnc {wl[-1]:.6f}); max relative difference {rel:.2e}")
    got = read_safetensors(os.path.join(out, "last.safetensors"))
    # Each tensor's largest difference relative to its largest value, or to FLOOR when that is
    # smaller: BN biases start at 0 and move by lr x a gradient that sums N*H*W cancelling
    # terms, so after a few steps they are ~1e-3 and f32 rounding of that sum is a large
    # fraction of them (PyTorch's own f32 run differs from its f64 run there by the same
    # order). The plain relative figure is printed too.
    FLOOR = 0.01
    worst = (0.0, "")
    plain = (0.0, "")
    for k, v in params.items():
        ref = v.detach().numpy()
        diff = np.abs(got[k] - ref).max()
        worst = max(worst, (diff / max(np.abs(ref).max(), FLOOR), k))
        plain = max(plain, (diff / max(np.abs(ref).max(), 1e-12), k))
    print(f"tensors: {len(params)}; worst difference {worst[0]:.2e} ({worst[1]}; relative to "
          f"max(|tensor|, {FLOOR})); plain relative {plain[0]:.2e} ({plain[1]})")
    if ema is not None:
        got = read_safetensors(os.path.join(out, "ema.safetensors"))
        ew = max((np.abs(got[k] - v.numpy()).max() / max(np.abs(v.numpy()).max(), FLOOR), k)
                 for k, v in ema.items())
        print(f"ema tensors: worst relative difference {ew[0]:.2e} ({ew[1]})")
        worst = max(worst, ew)
    # f32 rounding grows over steps; PyTorch's own f32 run differs from its f64 run by the
    # same order (see docs/training.md), so these bounds catch semantic errors, not rounding.
    ok = rel < 1e-4 and worst[0] < 1e-2
    print("agree with PyTorch" if ok else "DIFFER from PyTorch")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
