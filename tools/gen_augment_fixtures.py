#!/usr/bin/env python3
"""Writes the torchvision fixtures of the augmentation policies' ops and tables.

Applies every op of torchvision's AutoAugment / RandAugment / TrivialAugmentWide
(`torchvision.transforms.v2`, uint8 tensors, nearest interpolation) at a few magnitudes to a
fixed deterministic RGB image (3 x 9 x 11) and grey image (1 x 10 x 10), and records the
policy tables torchvision defines (the CIFAR-10 AutoAugment sub-policies, the op order of
each augmentation space and every magnitude bin for a 32 x 32 image).

Output (committed; read by crates/data/tests/policy_ops.rs):
  crates/data/tests/fixtures/augment_ops.json  cases, tables, byte offsets
  crates/data/tests/fixtures/augment_ops.bin   the images and every op's output, raw uint8 CHW

Needs torch and torchvision (not in CI): python3 tools/gen_augment_fixtures.py
"""

import json
import os
import sys

import torch
import torchvision
from torchvision.transforms import v2 as T
from torchvision.transforms.v2 import AutoAugmentPolicy, InterpolationMode

torch.set_num_threads(2)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "crates", "data", "tests", "fixtures")


def test_image(c, h, w, salt):
    """A deterministic image with gradients, texture, and some 0 and 255 pixels."""
    img = torch.zeros(c, h, w, dtype=torch.uint8)
    for ch in range(c):
        for y in range(h):
            for x in range(w):
                v = (x * 23 + y * 17 + ch * 61 + ((x * y + salt) % 7) * 19 + salt) % 256
                img[ch, y, x] = v
    img[0, 0, 0] = 0
    img[-1, h - 1, w - 1] = 255
    return img


def f32(v):
    """A Python float holding the float32 value nearest to v (as a torch table entry)."""
    return float(torch.tensor(v, dtype=torch.float32))


# (op, signed magnitudes as the transform receives them)
CASES = [
    ("Identity", [0.0]),
    ("ShearX", [f32(0.1), -0.3, f32(0.99)]),
    ("ShearY", [f32(0.1), -0.3, f32(0.99)]),
    ("TranslateX", [4.0, -4.5, f32(150 / 331 * 32 * 9 / 30), -32.0]),
    ("TranslateY", [4.0, -4.5, f32(150 / 331 * 32 * 9 / 30), -32.0]),
    ("Rotate", [30.0, -13.5, 90.0, -90.0, 180.0, -135.0, 4.5]),
    ("Brightness", [-0.9, -0.3, f32(0.5), f32(0.99)]),
    ("Color", [-0.9, -0.3, f32(0.5), f32(0.99)]),
    ("Contrast", [-0.9, -0.3, f32(0.5), f32(0.99)]),
    ("Sharpness", [-0.9, -0.3, f32(0.5), f32(0.99)]),
    ("Posterize", [8.0, 6.0, 4.0, 2.0, 1.0]),
    ("Solarize", [float(v) for v in torch.linspace(1.0, 0.0, 10)[[0, 3, 6, 9]]]
     + [float(torch.linspace(1.0, 0.0, 31)[15])]),
    ("AutoContrast", [0.0]),
    ("Equalize", [0.0]),
    ("Invert", [0.0]),
]
GEOMETRIC = {"ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate"}


def main():
    os.makedirs(OUT, exist_ok=True)
    images = {"rgb": test_image(3, 9, 11, 3), "grey": test_image(1, 10, 10, 5)}
    blob = bytearray()
    meta_images = {}
    for name, img in images.items():
        meta_images[name] = {"shape": list(img.shape), "offset": len(blob)}
        blob += img.numpy().tobytes()

    cases = []
    for op, magnitudes in CASES:
        fills = [None, 128] if op in GEOMETRIC else [None]
        for fill in fills:
            aug = T.AutoAugment(fill=fill)
            # The fill matters only where pixels are uncovered: two magnitudes suffice.
            for m in magnitudes if fill is None else magnitudes[:2]:
                for name, img in images.items():
                    out = aug._apply_image_or_video_transform(
                        img.clone(), op, m, interpolation=InterpolationMode.NEAREST, fill=aug._fill
                    )
                    cases.append(
                        {"op": op, "magnitude": m, "fill": fill or 0, "image": name, "offset": len(blob)}
                    )
                    blob += out.contiguous().numpy().tobytes()

    def space(cls, bins, h=32, w=32):
        table = {}
        for op, (fn, signed) in cls._AUGMENTATION_SPACE.items():
            mags = fn(bins, h, w)
            table[op] = {
                "signed": signed,
                "magnitudes": None if mags is None else [float(v) for v in mags],
            }
        return {"ops": list(cls._AUGMENTATION_SPACE.keys()), "bins": bins, "table": table}

    aa = T.AutoAugment(policy=AutoAugmentPolicy.CIFAR10)
    tables = {
        "autoaugment_cifar10": {
            "sub_policies": [[[op, p, m] for op, p, m in sub] for sub in aa._policies],
            "space": space(T.AutoAugment, 10),
        },
        "randaugment": {"space": space(T.RandAugment, T.RandAugment().num_magnitude_bins),
                        "num_ops": T.RandAugment().num_ops, "magnitude": T.RandAugment().magnitude},
        "trivialaugment": {"space": space(T.TrivialAugmentWide, T.TrivialAugmentWide().num_magnitude_bins)},
    }
    meta = {
        "generator": "tools/gen_augment_fixtures.py",
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "images": meta_images,
        "cases": cases,
        "tables": tables,
    }
    with open(os.path.join(OUT, "augment_ops.bin"), "wb") as f:
        f.write(bytes(blob))
    with open(os.path.join(OUT, "augment_ops.json"), "w") as f:
        json.dump(meta, f, indent=None, separators=(",", ":"))
        f.write("\n")
    print(f"{len(cases)} cases, {len(blob)} bytes of pixels, written to {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
