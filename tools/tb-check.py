#!/usr/bin/env python3
"""Reads a wrnc run's TensorBoard event files with TensorBoard's own reader and checks that
the scalars equal the run's metrics.csv and steps.csv.

    python3 tools/tb-check.py RUN_DIR

Needs `pip install tensorboard`; without it the script says so and exits 0 (optional in CI).
Exit status 1 when a scalar differs or is missing.
"""
import csv
import os
import sys


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    run = sys.argv[1]
    try:
        from tensorboard.backend.event_processing.event_accumulator import (
            EventAccumulator,
        )
    except ImportError:
        print("tensorboard is not installed (pip install tensorboard): nothing checked")
        return 0
    tb = os.path.join(run, "tb")
    acc = EventAccumulator(tb, size_guidance={"scalars": 0})
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    with open(os.path.join(run, "metrics.csv")) as f:
        rows = list(csv.DictReader(f))
    with open(os.path.join(run, "run.json")) as f:
        import json

        split = json.load(f).get("epoch_eval_split", "val")
    failures = []

    def check(tag, want, tol):
        if tag not in tags:
            failures.append(f"{tag}: missing (tags: {sorted(tags)})")
            return
        got = [(e.step, e.value) for e in acc.Scalars(tag)]
        if [s for s, _ in got] != [s for s, _ in want]:
            failures.append(f"{tag}: steps {[s for s, _ in got][:5]}... vs {[s for s, _ in want][:5]}...")
            return
        for (s, g), (_, w) in zip(got, want):
            if abs(g - w) > tol + abs(w) * 1e-6:
                failures.append(f"{tag} at step {s}: {g} vs {w}")
                return
        print(f"{tag}: {len(got)} values equal")

    epochs = [int(r["epoch"]) for r in rows]
    for tag, col, tol in [
        ("epoch/train_loss", "train_loss", 1e-5),
        ("epoch/train_acc", "train_acc", 1e-5),
        (f"epoch/{split}_loss", "val_loss", 1e-5),
        (f"epoch/{split}_acc", "val_acc", 1e-5),
        ("epoch/lr", "lr", 1e-6),
        ("epoch/images_per_sec", "images_per_sec", 0.06),
    ]:
        check(tag, [(e, float(r[col])) for e, r in zip(epochs, rows)], tol)
    with open(os.path.join(run, "steps.csv")) as f:
        steps = list(csv.DictReader(f))
    check("step/loss", [(int(r["step"]), float(r["loss"])) for r in steps], 1e-5)
    if failures:
        print("MISMATCH:\n  " + "\n  ".join(failures))
        return 1
    print(f"ok: TensorBoard reads the scalars of {run} as metrics.csv and steps.csv hold them")
    return 0


if __name__ == "__main__":
    sys.exit(main())
