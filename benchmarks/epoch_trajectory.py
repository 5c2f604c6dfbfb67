"""The painted check of one run at several epochs, and the epoch ``train.validate_every`` would end on.

Each folder is a copy of one run taken at the end of a chunk of its training (``cavga train
--resume --epochs E`` then a copy, for E = 20, 40, ...; a resumed CPU run trains as an
uninterrupted one). Reads each copy's ``validation.json`` (the painted check ``cavga train`` ends
with) and, where ``cavga evaluate`` has written one, its ``metrics.json``; trains nothing.

    python benchmarks/epoch_trajectory.py runs/traj-seed0-ep{20,40,60,80,100} --every 20 \\
        --out benchmarks/results/issue8/epoch-trajectory-s31/seed0.json

The choice is :class:`cavga.epoch_choice.EpochChoice`'s: the best painted pixel AUROC among the
epochs that are multiples of ``--every`` and the last, ties to the later. Test numbers, where
present, are printed beside it and play no part in it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from cavga.io_utils import atomic_write_json


def _row(folder: Path) -> dict:
    epoch = sum(1 for line in (folder / "history.jsonl").read_text().splitlines() if line.strip())
    painted = json.loads((folder / "validation.json").read_text())["metrics"]
    row = {"folder": str(folder), "epoch": epoch, "painted_pixel_auroc": painted["pixel_auroc"],
           "painted_iou": painted["iou"]}  # fmt: skip
    if (folder / "metrics.json").is_file():
        test = json.loads((folder / "metrics.json").read_text())["metrics"]
        row["test"] = {k: test[k] for k in ("image_auroc", "pixel_auroc", "iou", "detection_accuracy", "aupro")}
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folders", nargs="+", type=Path)
    ap.add_argument("--every", type=int, default=20, help="train.validate_every to apply (default 20)")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    rows = sorted((_row(f) for f in args.folders), key=lambda r: r["epoch"])
    last = rows[-1]["epoch"]
    checked = [r for r in rows if r["epoch"] % args.every == 0 or r["epoch"] == last]
    best = max(checked, key=lambda r: (r["painted_pixel_auroc"], r["epoch"]))  # ties: the later epoch
    print("| epoch | painted pixel AUROC | painted IoU | test image | test pixel | test IoU | test det. |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        t = r.get("test", {})
        cells = [f"{t[k]:.3f}" if k in t else "" for k in ("image_auroc", "pixel_auroc", "iou", "detection_accuracy")]
        mark = " (chosen)" if r is best else ""
        painted = f"{r['painted_pixel_auroc']:.3f} | {r['painted_iou']:.3f}"
        print(f"| {r['epoch']}{mark} | {painted} | " + " | ".join(cells) + " |")
    if args.out:
        atomic_write_json(args.out, {"every": args.every, "chosen_epoch": best["epoch"], "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
