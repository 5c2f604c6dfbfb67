"""CAVGA-w's test IoU by the split it ran on: which anomalous training images it drew.

    python benchmarks/weak_split.py [--root benchmarks/results/issue8] [--model Dw] [--category bottle]
        [--out benchmarks/results/issue8/weak-split-s45.json]

With ``data.anomalous_fraction`` 0.02, CAVGA-w on MVTec bottle trained on one anomalous image until
session 45 (the count rounded), drawn by the data seed (the split): seed 0 drew contamination/012,
seed 1 broken_large/008, seed 2 contamination/019; since session 46 the count is rounded up (the
paper's Table 2) and the same seeds draw two: broken_small/004 beside contamination/012,
broken_small/016 beside broken_large/008, contamination/013 beside contamination/019. This reads
every stored run of the model and category under ``--root`` (each ``metrics.json`` as ``cavga
evaluate`` wrote it, and ``validation.json`` where there is one), groups the runs by split and the
images drawn, and prints each run's test IoU by defect type beside its painted check, then the mean
per group. It trains and evaluates nothing; the runs differ in settings as well as split (each run's
folder names its session), so the table shows how far the draw alone moves the IoU, not one
setting's seed spread.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from cavga.io_utils import atomic_write_json

ROOT = Path(__file__).resolve().parent / "results" / "issue8"


def weak_runs(root: Path, variant: str, category: str) -> list[dict]:
    """One record per stored run of ``variant`` on ``category`` under ``root``, sorted by split and IoU."""
    runs = []
    for path in sorted(root.rglob("metrics.json")):
        m = json.loads(path.read_text())
        split = m.get("split") or {}
        weak = split.get("weak_supervision") or {}
        if not (m.get("metrics") or {}).get("iou") or split.get("category") != category:
            continue
        if not str(m.get("model", "")).startswith(f"CAVGA-{variant}") or not weak.get("moved"):
            continue
        val = path.with_name("validation.json")
        painted = json.loads(val.read_text())["metrics"].get("pixel_auroc") if val.exists() else None
        runs.append({
            "run": str(path.parent.relative_to(root)),
            "split": split.get("seed"),
            "trained_on": [p.split("/test/")[-1] for p in weak["moved"]],
            "painted_pixel_auroc": painted,
            "iou": m["metrics"]["iou"],
            "pixel_auroc": m["metrics"].get("pixel_auroc"),
            "iou_by_defect": m.get("per_defect_iou") or {},
        })  # fmt: skip
    return sorted(runs, key=lambda r: (r["split"], r["iou"]))


def by_split(runs: list[dict]) -> dict[tuple[int, tuple[str, ...]], dict]:
    """Per split and anomalous images drawn (one split draws more images at a larger count): the number
    of runs, their mean IoU overall and by defect type."""
    out = {}
    for key in sorted({(r["split"], tuple(r["trained_on"])) for r in runs}, key=lambda k: (k[0], len(k[1]), k[1])):
        of = [r for r in runs if (r["split"], tuple(r["trained_on"])) == key]
        types = sorted({t for r in of for t in r["iou_by_defect"]})
        out[key] = {
            "split": key[0],
            "trained_on": list(key[1]),
            "runs": len(of),
            "iou": statistics.fmean(r["iou"] for r in of),
            "iou_by_defect": {t: statistics.fmean(r["iou_by_defect"][t] for r in of if t in r["iou_by_defect"])
                              for t in types},
        }  # fmt: skip
    return out


def _f(v: float | None) -> str:
    return "" if v is None else f"{v:.3f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default=str(ROOT))
    ap.add_argument("--model", default="Dw")
    ap.add_argument("--category", default="bottle")
    ap.add_argument("--out", help="also write the runs and the per-split means as JSON here")
    args = ap.parse_args()
    runs = weak_runs(Path(args.root), args.model, args.category)
    if not runs:
        raise SystemExit(f"{args.root}: no stored CAVGA-{args.model} run on {args.category} with metrics.json")
    types = sorted({t for r in runs for t in r["iou_by_defect"]})
    print("| run | split (trained on) | painted check | pixel AUROC | IoU | " + " | ".join(types) + " |")
    print("|" + "---|" * (5 + len(types)))
    for r in runs:
        cells = [r["run"], f"{r['split']} ({', '.join(r['trained_on'])})", _f(r["painted_pixel_auroc"]),
                 _f(r["pixel_auroc"]), _f(r["iou"]), *(_f(r["iou_by_defect"].get(t)) for t in types)]  # fmt: skip
        print("| " + " | ".join(cells) + " |")
    summary = by_split(runs)
    print("\n| split (trained on) | runs | mean IoU | " + " | ".join(types) + " |")
    print("|" + "---|" * (3 + len(types)))
    for s in summary.values():
        cells = [f"{s['split']} ({', '.join(s['trained_on'])})", str(s["runs"]), _f(s["iou"])]
        print("| " + " | ".join(cells + [_f(s["iou_by_defect"].get(t)) for t in types]) + " |")
    if args.out:
        atomic_write_json(args.out, {"runs": runs, "by_split": list(summary.values())})
        print(f"written: {args.out}")


if __name__ == "__main__":
    main()
