#!/usr/bin/env python3
"""Time to accuracy in plain PyTorch: the recipe of tools/time-to-accuracy.yaml, written the
way a PyTorch user would, for the wall-time comparison with `wrnc train` in
docs/performance.md.

WRN-10-2 (pre-activation, the network of tools/torch_wrn_bench.py with a 1-channel stem) on
Fashion-MNIST (1x28x28), inputs normalised with the training set's mean and standard
deviation, reflect-padded (2 pixels) random 28x28 crops and horizontal flips, SGD Nesterov
(lr 0.1, momentum 0.9, weight decay 5e-4), batch 128, shuffled every epoch (last partial batch
kept), CosineAnnealingLR stepped per epoch, the test set evaluated after every epoch. The
whole data set is held in memory as tensors; augmentation runs on the batch tensors.

    python3 tools/time_to_accuracy.py [--data /usr/share/datasets/fashion-mnist]
        [--epochs 2] [--threads 2] [--seed 0] [--bf16]

Prints one line per epoch and a final JSON line: {"wall_seconds" (the whole run: loading,
training, evaluation), "test_accuracy" (last epoch), ...}.
"""
import argparse
import gzip
import json
import os
import resource
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def read_idx(path):
    """An IDX file (gzipped or not) as a uint8 tensor."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return torch.frombuffer(bytearray(data[4 + 4 * ndim:]), dtype=torch.uint8).reshape(dims)


def load(root, split):
    prefix = "train" if split == "train" else "t10k"
    for suffix in (".gz", ""):
        images = os.path.join(root, f"{prefix}-images-idx3-ubyte{suffix}")
        labels = os.path.join(root, f"{prefix}-labels-idx1-ubyte{suffix}")
        if os.path.exists(images):
            x = read_idx(images).float().div_(255.0).unsqueeze(1)
            return x, read_idx(labels).long()
    sys.exit(f"no Fashion-MNIST {split} files under {root}")


def model(depth, width):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from torch_wrn_bench import WRN

    net = WRN(depth, width, 10)
    net.conv0 = nn.Conv2d(1, 16, 3, 1, 1, bias=False)
    nn.init.kaiming_normal_(net.conv0.weight, mode="fan_out", nonlinearity="relu")
    return net


def augment(x, pad):
    """Reflect-pad by `pad`, a random crop back to the input size and a random horizontal
    flip, per image."""
    n, c, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    dy = torch.randint(0, 2 * pad + 1, (n,))
    dx = torch.randint(0, 2 * pad + 1, (n,))
    rows = (dy[:, None] + torch.arange(h)[None, :])[:, None, :, None]
    out = padded.gather(2, rows.expand(n, c, h, w + 2 * pad))
    cols = (dx[:, None] + torch.arange(w)[None, :])[:, None, None, :]
    out = out.gather(3, cols.expand(n, c, h, w))
    flip = torch.rand(n) < 0.5
    out[flip] = out[flip].flip(3)
    return out


def evaluate(net, x, y, batch=256):
    net.eval()
    correct, loss = 0, 0.0
    with torch.no_grad():
        for i in range(0, len(x), batch):
            out = net(x[i:i + batch])
            loss += F.cross_entropy(out, y[i:i + batch], reduction="sum").item()
            correct += (out.argmax(1) == y[i:i + batch]).sum().item()
    return loss / len(x), correct / len(x)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--depth", type=int, default=10)
    ap.add_argument("--width", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--bf16", action="store_true",
                    help="CPU autocast to bf16 (against wrnc's train.precision=bf16)")
    a = ap.parse_args()
    started = time.perf_counter()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    xtr, ytr = load(a.data, "train")
    xte, yte = load(a.data, "test")
    mean, std = xtr.mean().item(), xtr.std().item()
    xtr = (xtr - mean) / std
    xte = (xte - mean) / std
    net = model(a.depth, a.width)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, nesterov=True,
                          weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=a.epochs)
    acc = 0.0
    for epoch in range(a.epochs):
        t0 = time.perf_counter()
        net.train()
        order = torch.randperm(len(xtr))
        total = 0.0
        for i in range(0, len(order), a.batch):
            idx = order[i:i + a.batch]
            xb = augment(xtr[idx], 2)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.bf16):
                loss = F.cross_entropy(net(xb), ytr[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        sched.step()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.bf16):
            test_loss, acc = evaluate(net, xte, yte)
        print(f"epoch {epoch + 1}/{a.epochs}: train loss {total / len(xtr):.4f}, "
              f"test loss {test_loss:.4f}, test accuracy {100 * acc:.2f}% "
              f"({time.perf_counter() - t0:.1f} s)", flush=True)
    wall = time.perf_counter() - started
    print(json.dumps({"wall_seconds": wall, "test_accuracy": acc, "epochs": a.epochs,
                      "bf16": a.bf16,
                      "threads": torch.get_num_threads(), "torch": torch.__version__,
                      "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                      * 1024}))


if __name__ == "__main__":
    main()
