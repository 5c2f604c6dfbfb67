"""What ``infer.mask_gate: verdict`` does on finished runs: masks only where the image verdict is
anomalous, against every image's mask (the paper's IoU protocol).

For each run folder (trained and evaluated; its weights are not changed) this takes the mask
threshold ``infer.mask_peak_fraction: auto`` chooses on the run's painted held-out normals (as
``benchmarks/mask_peak_fraction.py`` does, rule ``span``), then scores the painted set and the test
split with and without the gate: IoU over the anomalous images, and on the normal images the share
with any flagged pixel and the mean share of their pixels flagged. The gate changes no threshold
and no map: it only empties the masks of images the verdict calls normal.

    python benchmarks/mask_gate.py $(cat RUNS) --out benchmarks/results/issue8/mask-gate-s36.json
"""

from __future__ import annotations

import statistics
from pathlib import Path

import numpy as np
from mask_peak_fraction import chosen, level_mask, painted_maps, run_studies, sweep, test_maps

from cavga.image_scores import verdict_gate
from cavga.inference import Predictor
from cavga.io_utils import atomic_write_json
from cavga.mask_threshold import mask_candidates
from cavga.metrics import iou, normal_flagged


def both_ways(maps, verdicts, masks, labels, t: float, r: float) -> dict[str, float]:
    """IoU and the normal images' flagged share, with every mask ("all") and gated by the verdict."""
    pred = [level_mask(m, t, r, "span") for m in maps]
    gated = [verdict_gate(p, v) for p, v in zip(pred, verdicts, strict=True)]
    out = {}
    for name, ms in (("all", pred), ("gated", gated)):
        normal = [p for p, y in zip(ms, labels, strict=True) if y == 0]
        out[f"iou_{name}"] = round(iou(ms, masks, labels), 4)
        out[f"normal_any_{name}"] = round(normal_flagged(ms, labels), 4)
        out[f"normal_share_{name}"] = round(float(np.mean([p.mean() for p in normal])), 5)
    out["anomalous_detected"] = round(float(np.mean([v for v, y in zip(verdicts, labels, strict=True) if y])), 4)
    return out


def study(run: Path) -> dict:
    predictor = Predictor.from_run(run, "cpu")
    maps, masks, labels, kinds, verdicts = painted_maps(predictor, run)
    label = chosen(sweep(predictor, maps, masks, labels, kinds, "span"), True)
    q, _, r = mask_candidates(0.0, "auto")[label]
    t = predictor.threshold_at_quantile(q)
    t_maps, t_masks, t_labels, t_verdicts = test_maps(predictor, run)
    return {
        "model": predictor.cfg.model.label,
        "threshold": label,
        "painted": both_ways(maps, verdicts, masks, labels, t, r),
        "test": both_ways(t_maps, t_verdicts, t_masks, t_labels, t, r),
    }


def main(argv: list[str] | None = None) -> int:
    args, rows = run_studies(argv, __doc__, study)
    print("| run | model | threshold | test IoU: all → gated | normal test images with a mask: all → gated |")
    print("|---|---|---|---|---|")
    for run, row in rows.items():
        t = row["test"]
        print(f"| {'/'.join(Path(run).parts[-2:])} | {row['model'][:8]} | {row['threshold']} | "
              f"{t['iou_all']:.3f} → {t['iou_gated']:.3f} | "
              f"{t['normal_any_all']:.2f} → {t['normal_any_gated']:.2f} |")  # fmt: skip
    keys = next(iter(rows.values()))["test"].keys()
    summary = {side: {k: round(statistics.mean(row[side][k] for row in rows.values()), 4) for k in keys}
               for side in ("painted", "test")}  # fmt: skip
    summary["test"]["iou_down"] = sum(row["test"]["iou_gated"] < row["test"]["iou_all"] for row in rows.values())
    for side, s in summary.items():
        print(f"{side} (mean over {len(rows)} runs): {s}")
    atomic_write_json(args.out, {"runs": rows, "summary": summary})
    print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
