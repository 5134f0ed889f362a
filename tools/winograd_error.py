#!/usr/bin/env python3
"""Float32 error of Winograd F(m x m, 3x3) for a choice of interpolation points.

Builds the Cook-Toom matrices (Aᵀ, G, Bᵀ) exactly (rational arithmetic) for the given finite
points plus the point at infinity, runs one output tile of a 3x3 convolution over C input
channels in float32 the way a Winograd kernel does (transform, multiply point-wise, sum over
channels, inverse transform) and compares it with the same tile computed directly in float64.
Inputs are post-ReLU normal values, weights He-normal, as in a WRN layer.

    python3 tools/winograd_error.py                       # the default comparison
    python3 tools/winograd_error.py --m 8 --points=0,1,-1,2,-2,5/4,-5/4,2/5,-2/5
    python3 tools/winograd_error.py --m 8 --search        # best point sets for F(8x8)

Prints the mean and the largest relative error (largest |error| / largest |output| per tile)
over the trials. wrnc uses F(4x4, 3x3) with points 0, ±1, ±2 (docs/performance.md).
"""

import argparse
import itertools
from fractions import Fraction

import numpy as np

R = 3  # kernel size


def poly_mul(a, b):
    """Coefficients (lowest first) of the product of two polynomials."""
    out = [Fraction(0)] * (len(a) + len(b) - 1)
    for i, x in enumerate(a):
        for j, y in enumerate(b):
            out[i + j] += x * y
    return out


def cook_toom(m, points):
    """Aᵀ (m x n), G (n x 3), Bᵀ (n x n) of F(m, 3) for `points` (n - 1 finite ones) and ∞."""
    n = m + R - 1
    pts = [Fraction(p) for p in points]
    if len(pts) != n - 1 or len(set(pts)) != len(pts):
        got = ", ".join(str(p) for p in pts)
        raise ValueError(f"F({m}x{m}, 3x3) needs {n - 1} distinct finite points, got {len(pts)}: {got}")
    full = [Fraction(1)]
    for p in pts:
        full = poly_mul(full, [-p, Fraction(1)])
    at = [[p**i for p in pts] + [Fraction(int(i == m - 1))] for i in range(m)]
    g, bt = [], []
    for p in pts:
        others = [q for q in pts if q != p]
        denom = Fraction(1)
        lagrange = [Fraction(1)]
        for q in others:
            denom *= p - q
            lagrange = poly_mul(lagrange, [-q, Fraction(1)])
        g.append([p**j / denom for j in range(R)])
        bt.append(lagrange + [Fraction(0)] * (n - len(lagrange)))
    g.append([Fraction(int(j == R - 1)) for j in range(R)])
    bt.append(full + [Fraction(0)] * (n - len(full)))
    return [np.array([[float(v) for v in row] for row in mat], dtype=np.float32) for mat in (at, g, bt)]


def tile_errors(m, points, channels, trials, seed=0):
    """Relative errors of `trials` float32 Winograd tiles against float64 direct ones."""
    at, g, bt = cook_toom(m, points)
    n = m + R - 1
    rng = np.random.default_rng(seed)
    errors = []
    for _ in range(trials):
        d = np.maximum(rng.standard_normal((channels, n, n)), 0).astype(np.float32)
        w = (rng.standard_normal((channels, R, R)) * np.sqrt(2 / (R * R * channels))).astype(np.float32)
        d64, w64 = d.astype(np.float64), w.astype(np.float64)
        direct = np.array(
            [[np.sum(d64[:, i : i + R, j : j + R] * w64) for j in range(m)] for i in range(m)]
        )
        u = np.einsum("ab,cbd,ed->cae", g, w, g).astype(np.float32)
        v = np.einsum("ab,cbd,ed->cae", bt, d, bt).astype(np.float32)
        y = at @ np.sum(u * v, axis=0, dtype=np.float32) @ at.T
        errors.append(np.abs(y - direct).max() / np.abs(direct).max())
    return float(np.mean(errors)), float(np.max(errors))


def parse_points(text):
    """`0,1,-1,1/2,-1/2` as fractions."""
    try:
        return [Fraction(t.strip()) for t in text.split(",")]
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"not a comma-separated list of numbers: {text!r}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--m", type=int, help="output tile side (F(m x m, 3x3))")
    ap.add_argument("--points", type=parse_points, help="the finite points, e.g. 0,1,-1,2,-2 (∞ is added)")
    ap.add_argument("--search", action="store_true", help="try symmetric point sets for --m")
    ap.add_argument("--channels", type=int, default=128, help="input channels summed (default 128)")
    ap.add_argument("--trials", type=int, default=20, help="tiles per measurement (default 20)")
    a = ap.parse_args()
    if a.channels < 1 or a.trials < 1:
        ap.error("--channels and --trials must be at least 1")
    half = Fraction(1, 2)
    if a.search:
        if not a.m or a.m % 2 or a.m < 4:
            ap.error("--search needs an even --m (4 or more)")
        pairs = (a.m + R - 2 - 3) // 2  # beyond 0, ±1
        cands = [half, Fraction(2), Fraction(3, 2), Fraction(2, 3), Fraction(3, 4), Fraction(4, 3),
                 Fraction(1, 4), Fraction(3), Fraction(5, 4), Fraction(4, 5), Fraction(5, 2),
                 Fraction(2, 5), Fraction(1, 3), Fraction(4)]
        found = []
        for combo in itertools.combinations(cands, pairs):
            pts = [0, 1, -1] + [s * c for c in combo for s in (1, -1)]
            found.append((tile_errors(a.m, pts, a.channels, a.trials)[0], combo))
        found.sort()
        for err, combo in found[:8]:
            print(f"mean {err:.2e}  points 0, ±1, " + ", ".join(f"±{c}" for c in combo))
        return
    if a.points:
        if not a.m:
            ap.error("--points needs --m")
        cases = [(f"F({a.m}x{a.m}, 3x3)", a.m, a.points)]
    else:
        cases = [
            ("F(2x2, 3x3) 0 ±1", 2, [0, 1, -1]),
            ("F(4x4, 3x3) 0 ±1 ±2 (wrnc)", 4, [0, 1, -1, 2, -2]),
            ("F(6x6, 3x3) 0 ±1 ±2 ±1/2", 6, [0, 1, -1, 2, -2, half, -half]),
            ("F(8x8, 3x3) 0 ±1 ±2 ±1/2 ±4", 8, [0, 1, -1, 2, -2, half, -half, 4, -4]),
            ("F(8x8, 3x3) 0 ±1 ±2 ±5/4 ±2/5", 8,
             [0, 1, -1, 2, -2, Fraction(5, 4), Fraction(-5, 4), Fraction(2, 5), Fraction(-2, 5)]),
        ]
    for name, m, pts in cases:
        try:
            mean, worst = tile_errors(m, pts, a.channels, a.trials)
        except ValueError as e:
            ap.error(str(e))
        print(f"{name:36} mean {mean:.2e}  max {worst:.2e}  ({a.channels} channels)")


if __name__ == "__main__":
    main()
