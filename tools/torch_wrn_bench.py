#!/usr/bin/env python3
"""PyTorch eager training throughput of WRN-depth-width on CIFAR-shaped data (the reference
for `wrnc bench`; used by tools/gpu-check.sh).

The network is the one specs/wrn-28-10.yaml describes (the paper's official PyTorch code):
conv3x3(3->16), three groups of (depth-4)/6 pre-activation basic blocks of widths 16k, 32k,
64k (strides 1, 2, 2; a 1x1 conv shortcut on the pre-activated input where the width
changes), BN-ReLU, global average pool, linear; no conv biases. Training step: forward,
cross-entropy, backward, SGD (lr 0.1, momentum 0.9, Nesterov, weight decay 5e-4), on random
images already on the GPU (data loading is not measured).

Prints one JSON line: {"images_per_sec": ..., "ms_per_step": ..., ...}.
"""
import argparse
import json
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, cin, cout, stride, dropout):
        super().__init__()
        self.bn0 = nn.BatchNorm2d(cin)
        self.conv0 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv1 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.dropout = dropout
        self.convdim = nn.Conv2d(cin, cout, 1, stride, 0, bias=False) if cin != cout else None

    def forward(self, x):
        o1 = F.relu(self.bn0(x))
        y = self.conv0(o1)
        o2 = F.relu(self.bn1(y))
        if self.dropout > 0:
            o2 = F.dropout(o2, self.dropout, self.training)
        z = self.conv1(o2)
        return z + (self.convdim(o1) if self.convdim is not None else x)


class WRN(nn.Module):
    def __init__(self, depth=28, width=10, classes=10, dropout=0.0):
        super().__init__()
        assert (depth - 4) % 6 == 0
        n = (depth - 4) // 6
        widths = [16 * width, 32 * width, 64 * width]
        self.conv0 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        blocks, cin = [], 16
        for g, (w, s) in enumerate(zip(widths, [1, 2, 2])):
            for i in range(n):
                blocks.append(Block(cin, w, s if i == 0 else 1, dropout))
                cin = w
        self.blocks = nn.Sequential(*blocks)
        self.bn = nn.BatchNorm2d(cin)
        self.fc = nn.Linear(cin, classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        x = self.blocks(self.conv0(x))
        x = F.relu(self.bn(x))
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.fc(x)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--depth", type=int, default=28)
    ap.add_argument("--width", type=int, default=10)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--precision", choices=["f32", "bf16"], default="f32")
    ap.add_argument("--tf32", choices=["on", "off", "torch-default"], default="torch-default",
                    help="torch-default: cuDNN convs may use TF32, matmuls do not")
    ap.add_argument("--cudnn-benchmark", action="store_true")
    a = ap.parse_args()

    if not torch.cuda.is_available():
        print(json.dumps({"error": "torch.cuda.is_available() is False"}))
        return 1
    if a.tf32 != "torch-default":
        on = a.tf32 == "on"
        torch.backends.cudnn.allow_tf32 = on
        torch.backends.cuda.matmul.allow_tf32 = on
    torch.backends.cudnn.benchmark = a.cudnn_benchmark
    dev = torch.device("cuda")
    torch.manual_seed(0)
    model = WRN(a.depth, a.width).to(dev).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True,
                          weight_decay=5e-4)
    x = torch.randn(a.batch, 3, 32, 32, device=dev)
    y = torch.randint(0, 10, (a.batch,), device=dev)

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=a.precision == "bf16"):
            out = model(x)
        loss = F.cross_entropy(out.float(), y)
        loss.backward()
        opt.step()
        return loss

    for _ in range(a.warmup):
        step()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(a.steps):
        loss = step()
    torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    print(json.dumps({
        "framework": "pytorch-eager",
        "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name(0),
        "model": f"wrn-{a.depth}-{a.width}",
        "batch": a.batch,
        "steps": a.steps,
        "precision": a.precision,
        "tf32": a.tf32,
        "cudnn_tf32": torch.backends.cudnn.allow_tf32,
        "matmul_tf32": torch.backends.cuda.matmul.allow_tf32,
        "cudnn_benchmark": a.cudnn_benchmark,
        "loss": float(loss),
        "ms_per_step": 1000 * dt / a.steps,
        "images_per_sec": a.batch * a.steps / dt,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
