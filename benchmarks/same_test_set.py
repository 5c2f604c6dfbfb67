"""Stored runs' image-level figures again on another run's test set: IoU, detection accuracy, image AUROC.

    python benchmarks/same_test_set.py --like RUN_B RUN_A [RUN_A2 ...] [--out FILE.json]
    python benchmarks/same_test_set.py --today RUN_A [RUN_A2 ...] [--store DIR] [--out FILE.json]

Each run folder holds the ``scores.json`` that ``cavga evaluate`` wrote (one entry per test image:
label, raw score, verdict, IoU). The figures of every RUN_A are computed again over the test images
of RUN_B only, so two runs made on different test sets are compared on the same images: a CAVGA-u
run of sessions 1-45 (the anomalous training count of CAVGA-w rounded, one bottle image left out of
its test set) beside a CAVGA-w run of session 46 on (the count rounded up, two left out). With
``--today`` each run is computed over the test set that today's protocol draws from its own split
(its metrics.json: data root, layout, category, data seed, anomalous fraction; the data must be
where the run read it), and ``--store DIR`` writes each as ``DIR/<run name>/metrics.json`` (marked
``recomputed_from``) for ``benchmarks/where_we_stand.py`` to read. A RUN_A
that lacks one of RUN_B's test images is an error. Pixel AUROC and AUPRO need the maps, which are not
stored, and are not recomputed. Trains and evaluates nothing; the same metric functions as
``cavga evaluate`` (``cavga.metrics``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from cavga import data as D
from cavga.config.schema import DataConfig
from cavga.io_utils import atomic_write_json
from cavga.metrics import detection_accuracy, image_auroc


def _images(run: Path) -> list[dict]:
    path = run / "scores.json"
    if not path.exists():
        raise SystemExit(f"{path}: missing (run `cavga evaluate {run}` first)")
    return json.loads(path.read_text())["images"]


def today_test_set(run: Path) -> tuple[list[str], dict]:
    """The test images that today's protocol draws from the run's split (CAVGA-u's and CAVGA-w's alike),
    and the images it leaves out (the split's ``shared_test_set``)."""
    split = json.loads((run / "metrics.json").read_text())["split"]
    weak = split.get("shared_test_set") or split.get("weak_supervision")
    if weak is None:
        raise SystemExit(f"{run}: its split has no anomalous fraction (a one-class run is tested on every image)")
    root = Path(split["root"])
    category = split.get("category")
    cfg = DataConfig(root=str(root.parent if category else root), layout=split["layout"], category=category,
                     seed=split["seed"], anomalous_fraction=weak["anomalous_fraction"])  # fmt: skip
    today = D.drop_weak_anomalies_from_test(D.load_split(cfg), cfg.anomalous_fraction, cfg.seed)
    return [r.image_path for r in today.test], today.info["shared_test_set"]


def on_test_set(images: list[dict], paths: list[str], where: str = "run") -> dict:
    """Image AUROC (raw score), detection accuracy (verdicts), IoU (mean over anomalous images) and IoU
    by defect type of ``images`` restricted to ``paths``, in that order."""
    by_path = {im["path"]: im for im in images}
    missing = [p for p in paths if p not in by_path]
    if missing:
        n = len(missing)
        raise SystemExit(f"{where}: {n} of the reference test images are not in its test set, e.g. {missing[0]}")
    kept = [by_path[p] for p in paths]
    labels = [im["label"] for im in kept]
    anomalous = [im for im in kept if im["label"] == 1]
    defects = sorted({im["defect"] for im in anomalous})
    return {
        "n_test": len(kept),
        "n_test_anomalous": len(anomalous),
        "image_auroc": image_auroc([im["raw_score"] for im in kept], labels),
        "detection_accuracy": detection_accuracy([im["verdict"] for im in kept], labels),
        "iou": float(np.mean([im["iou"] for im in anomalous])),
        "iou_by_defect": {t: float(np.mean([im["iou"] for im in anomalous if im["defect"] == t])) for t in defects},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="run folders whose figures are computed again")
    which = ap.add_mutually_exclusive_group(required=True)
    which.add_argument("--like", help="the run folder whose test images are used")
    which.add_argument("--today", action="store_true", help="each run's split as today's protocol draws it")
    ap.add_argument("--store", help="--today: write each run's figures as <DIR>/<run name>/metrics.json")
    ap.add_argument("--out", help="also write the figures as JSON here")
    args = ap.parse_args()
    if args.store and not args.today:
        ap.error("--store needs --today")
    runs = [Path(r) for r in ([args.like] if args.like else []) + args.runs]
    like = None if args.today else [im["path"] for im in _images(Path(args.like))]  # read once
    rows, left_out = {}, {}
    for run in runs:
        paths = like
        if args.today:
            paths, left_out[str(run)] = today_test_set(run)
        rows[str(run)] = on_test_set(_images(run), paths, str(run))
    print("test set: " + ("each run's, as today's protocol draws it" if args.today else args.like))
    print("| run | images (anomalous) | image | IoU | det. | IoU by defect |")
    print("|---|---|---|---|---|---|")
    for run, r in rows.items():
        by = ", ".join(f"{t} {v:.3f}" for t, v in r["iou_by_defect"].items())
        print(f"| {run} | {r['n_test']} ({r['n_test_anomalous']}) | {r['image_auroc']:.3f} | {r['iou']:.3f} "
              f"| {r['detection_accuracy']:.3f} | {by} |")  # fmt: skip
    if args.store:
        for run, r in rows.items():
            m = json.loads((Path(run) / "metrics.json").read_text())
            split = {**m["split"], "n_test": r["n_test"], "n_test_anomalous": r["n_test_anomalous"],
                     "shared_test_set": left_out[run]}  # fmt: skip
            keys = ("image_auroc", "iou", "detection_accuracy")
            atomic_write_json(Path(args.store) / Path(run).name / "metrics.json", {
                "recomputed_from": run, "model": m.get("model"), "image_auroc": r["image_auroc"],
                "metrics": {k: r[k] for k in keys}, "per_defect_iou": r["iou_by_defect"], "split": split,
            })  # fmt: skip
        print(f"stored under: {args.store}")
    if args.out:
        atomic_write_json(args.out, {"like": args.like, "today": args.today, "runs": rows})
        print(f"written: {args.out}")


if __name__ == "__main__":
    main()
