#!/usr/bin/env python3
"""Convert the UCI optical digits CSV into the compact binary embedded by wrnc-data.

Usage:
    python3 make_digits_bin.py [INPUT_CSV_GZ] [OUTPUT_BIN]

Defaults: INPUT_CSV_GZ = /work/shared/data/digits.csv.gz, OUTPUT_BIN = digits.bin
next to this script.

Input: gzip-compressed CSV without header; each line holds 64 integer pixel
values in 0..16 (an 8x8 image, row-major) followed by the label 0..9.

Output: for each image, in input order, 64 bytes (the pixel values 0..16,
unchanged, row-major) followed by 1 label byte; 1797 * 65 = 116805 bytes.

This script is run by hand once; it is NOT part of the build.
"""
import gzip
import os
import sys


def main() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    src = sys.argv[1] if len(sys.argv) > 1 else "/work/shared/data/digits.csv.gz"
    dst = sys.argv[2] if len(sys.argv) > 2 else os.path.join(here, "digits.bin")
    out = bytearray()
    count = 0
    with gzip.open(src, "rt") as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            vals = [int(float(v)) for v in line.split(",")]
            if len(vals) != 65:
                raise SystemExit(f"line {lineno}: expected 65 values, got {len(vals)}")
            if any(v < 0 or v > 16 for v in vals[:64]) or not 0 <= vals[64] <= 9:
                raise SystemExit(f"line {lineno}: value out of range")
            out.extend(vals)
            count += 1
    with open(dst, "wb") as f:
        f.write(out)
    print(f"wrote {count} images ({len(out)} bytes) to {dst}")


if __name__ == "__main__":
    main()
