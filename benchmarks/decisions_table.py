"""What training decided on painted held-out normals, for several runs side by side.

Training ends by deciding the ``auto`` inference settings on the run's held-out normals with
painted defects (cavga.painted_decisions.decide_on_painted) and keeps each choice, with the validation
numbers it was chosen by, in the checkpoint. This prints them, one row per run: the image score
chosen and the validation image AUROC of every candidate, and the map direction with its
validation pixel AUROC (CAVGA-u), so that two settings can be compared on validation before their
test numbers are looked at. No image is read.

    .venv/bin/python benchmarks/decisions_table.py runs/mnist-stretch/Du/*/seed0 runs/mnist-center/Du/*/seed0 \
        --out decisions.json
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from cavga.io_utils import atomic_write_json
from cavga.runtime import CHECKPOINT, load_checkpoint


def decisions(run: Path) -> dict:
    """The validation numbers behind one run's ``auto`` choices."""
    state = load_checkpoint(run / CHECKPOINT)
    score = state.get("image_score") or {}
    direction = state.get("attention_direction") or {}
    shift = state.get("shifted_map") or {}
    chosen = score.get("image_score")
    return {
        "run": str(run),
        "resize": state["config"]["data"]["resize"],
        "image_score": chosen,
        "validation_image_auroc": score.get("validation_image_auroc", {}).get(chosen),
        "validation_image_auroc_by_score": score.get("validation_image_auroc"),
        "attention_direction": direction.get("attention_direction"),
        "validation_pixel_auroc": direction.get("validation_pixel_auroc"),
        "shifted_map": shift.get("shifted_map"),
        "validation_pixel_auroc_by_shift": shift.get("validation_pixel_auroc_by_shift"),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, help="JSON of every row, and the mean of each group of runs by data.resize")
    args = ap.parse_args()
    rows = [decisions(r) for r in args.runs]
    print(
        "| run | resize | image score | val image AUROC (chosen) | by score | direction | val pixel AUROC "
        "| shifted | val pixel AUROC by shift |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        by = ", ".join(f"{k} {v}" for k, v in (r["validation_image_auroc_by_score"] or {}).items())
        by_shift = ", ".join(f"{k} {v}" for k, v in (r["validation_pixel_auroc_by_shift"] or {}).items())
        print(
            f"| {r['run']} | {r['resize']} | {r['image_score']} | {r['validation_image_auroc']} | {by} | "
            f"{r['attention_direction']} | {r['validation_pixel_auroc']} | {r['shifted_map']} | {by_shift} |"
        )
    means = {}
    for resize in sorted({r["resize"] for r in rows}):
        group = [r for r in rows if r["resize"] == resize]
        means[resize] = {
            k: round(float(np.mean([r[k] for r in group if r[k] is not None])), 4)
            for k in ("validation_image_auroc", "validation_pixel_auroc")
            if any(r[k] is not None for r in group)
        }
        print(f"mean over {len(group)} runs with data.resize {resize}: {means[resize]}")
    if args.out:
        atomic_write_json(args.out, {"rows": rows, "means_by_resize": means})
        print(f"written: {args.out}")


if __name__ == "__main__":
    main()
