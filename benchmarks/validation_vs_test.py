"""How well does the painted-defect validation predict the real test split?

Every setting in this project is chosen on held-out normal images with painted defects
(`cavga validate`), never on real anomalies. This script asks whether that protocol can be trusted,
from runs already measured both ways: every stored run folder under RESULTS that holds a
``validation.json`` and a ``metrics.json`` with pixel metrics (same model, same inference settings).

    .venv/bin/python benchmarks/validation_vs_test.py benchmarks/results \
        --out benchmarks/results/validation-vs-test.json

Prints one row per run (validation and test pixel AUROC, image AUROC and IoU), then, for the CAVGA
runs, for the baselines, for the CAVGA runs of each data set and, where a data set has runs of both,
for its CAVGA-D and CAVGA-R runs apart: Spearman's rank correlation
between validation and test (``scipy.stats.spearmanr``) for each metric, and the test pixel AUROC
of the runs in each band of validation pixel AUROC. Copies of one trained model stored under two
names (threshold-free numbers equal to 4 decimals; their masks may differ where the mask quantile
was decided again) count once, the first by path. The runs are not independent samples (several
seeds of one setting, settings chosen on this very validation), so the correlations describe
these runs, not a population.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from cavga.io_utils import atomic_write_json

METRICS = ("pixel_auroc", "image_auroc", "iou")
SETTINGS = ("attention_direction", "image_score", "weak_map")  # must agree between the two files
BANDS = ((0.0, 0.7), (0.7, 0.9), (0.9, 1.01))  # validation pixel AUROC; 0.7 is `cavga train`'s warning line


def collect(results: Path) -> list[dict]:
    """One row per run folder holding both files, copies of a run counted once."""
    rows, seen = [], set()
    for v_path in sorted(results.rglob("validation.json")):
        m_path = v_path.with_name("metrics.json")
        if not m_path.is_file():
            continue
        val, test = json.loads(v_path.read_text()), json.loads(m_path.read_text())
        if test.get("metrics", {}).get("pixel_auroc") is None:  # no pixel ground truth (one-class runs)
            continue
        if any(val.get(k) != test.get(k) for k in SETTINGS):  # validated under other inference settings
            continue
        row = {
            "run": str(v_path.parent.relative_to(results)),
            "model": test["model"],
            "data": test.get("split", {}).get("category") or test.get("split", {}).get("layout"),
            "image_size": test.get("image_size"),
            "baseline": not test["model"].startswith("CAVGA"),
        }
        for k in METRICS:
            row[f"val_{k}"], row[f"test_{k}"] = val["metrics"][k], test["metrics"][k]
        threshold_free = (round(row[f"{p}_{k}"], 4) for p in ("val", "test") for k in ("pixel_auroc", "image_auroc"))
        key = (row["model"], row["data"], *threshold_free)  # the same maps and scores: one trained model
        if key not in seen:
            seen.add(key)
            rows.append(row)
    return rows


def summarise(rows: list[dict]) -> dict:
    """Spearman's rho (and its p-value) per metric, and test pixel AUROC by validation band."""
    out: dict = {"n": len(rows), "spearman": {}, "bands": []}
    for k in METRICS:
        pairs = [
            (r[f"val_{k}"], r[f"test_{k}"]) for r in rows if r[f"val_{k}"] is not None and r[f"test_{k}"] is not None
        ]
        if len(pairs) >= 3:
            rho, p = spearmanr(*zip(*pairs, strict=True))
            out["spearman"][k] = {"rho": round(float(rho), 3), "p": float(f"{p:.2g}"), "n": len(pairs)}
    for lo, hi in BANDS:
        test = np.array([r["test_pixel_auroc"] for r in rows if lo <= r["val_pixel_auroc"] < hi])
        band = {"val_pixel_auroc": f"[{lo}, {min(hi, 1.0)}{']' if hi > 1 else ')'}", "n": int(test.size)}
        if test.size:
            band.update(test_min=round(float(test.min()), 3), test_median=round(float(np.median(test)), 3))
            band.update(test_max=round(float(test.max()), 3))
        out["bands"].append(band)
    return out


def family(model: str) -> str:
    """CAVGA's architecture letter of a model name ("CAVGA-Du (...)" -> "D"; "CAVGA-R*u" -> "R")."""
    return model.removeprefix("CAVGA-")[:1]


def groups(rows: list[dict]) -> dict[str, list[dict]]:
    """The runs each summary describes: CAVGA's, the baselines', CAVGA's on each data set, and on
    each data set CAVGA-D's and CAVGA-R's apart where both have runs there: a check that ranks the
    families apart may still not rank the settings of one family (MTD, session 56)."""
    cavga = [r for r in rows if not r["baseline"]]
    out = {"cavga": cavga, "baselines": [r for r in rows if r["baseline"]]}
    for d in sorted({r["data"] for r in cavga}):
        on_d = [r for r in cavga if r["data"] == d]
        out[f"cavga on {d}"] = on_d
        letters = sorted({family(r["model"]) for r in on_d})
        if len(letters) > 1:
            out.update({f"CAVGA-{f} on {d}": [r for r in on_d if family(r["model"]) == f] for f in letters})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results", type=Path, help="folder searched for run folders (benchmarks/results)")
    ap.add_argument("--out", type=Path, help="JSON with every row and the summaries")
    args = ap.parse_args()
    rows = sorted(collect(args.results), key=lambda r: (r["baseline"], r["val_pixel_auroc"]))
    head = ("run", "model", "data", "px") + tuple(
        f"{p} {k}" for k in ("pixel AUROC", "image AUROC", "IoU") for p in ("val", "test")
    )
    print("| " + " | ".join(head) + " |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        cells = [f"{r[f'{p}_{k}']:.3f}" for k in METRICS for p in ("val", "test")]
        print(f"| {r['run']} | {r['model']} | {r['data']} | {r['image_size']} | " + " | ".join(cells) + " |")
    summary = {name: summarise(runs) for name, runs in groups(rows).items()}
    for name, s in summary.items():
        rho = ", ".join(f"{k} {v['rho']} (p {v['p']}, n {v['n']})" for k, v in s["spearman"].items())
        print(f"\n{name}: {s['n']} runs; Spearman rho, validation vs test: {rho}")
        for b in s["bands"]:
            if b["n"]:
                print(
                    f"  validation pixel AUROC in {b['val_pixel_auroc']}: {b['n']} runs, test pixel AUROC "
                    f"{b['test_min']}-{b['test_max']} (median {b['test_median']})"
                )
    if args.out:
        atomic_write_json(args.out, {"rows": rows, **summary})
        print(f"written: {args.out}")


if __name__ == "__main__":
    main()
