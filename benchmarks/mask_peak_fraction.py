"""What ``infer.mask_peak_fraction: auto`` would do to finished runs: the mask threshold chosen on
painted held-out normals with each map's level raised towards its own peak, against the quantile alone.

For each run folder (trained and evaluated; its weights are not changed) this paints the run's
held-out normals as training's end does (seed 0, two copies), sweeps every (mask quantile, peak
fraction) of :func:`cavga.mask_threshold.mask_candidates` by painted IoU (overall and per painter),
takes the best as ``auto`` would, and only then scores the run's test split at that threshold and
at the quantile-alone choice (fraction 0). It does the same for the rejected variant "share", the
level ``max(t, r * peak)`` (a share of the map's maximum, as CAM papers threshold), for comparison.

    python benchmarks/mask_peak_fraction.py RUN... --out benchmarks/results/issue8/mask-peak-fraction-s35.json

The decision rule was written before any test number existed (docs/results.md, "Session 35"):
adopt if the chosen threshold's painted IoU beats the quantile alone by >= 0.02 on average over the
runs, with a gain in at least three of the four painters.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import numpy as np
import torch

from cavga.demo_data import DEFECT_TYPES
from cavga.evaluate import native_mask
from cavga.image_scores import native_map, peak_mask
from cavga.inference import Predictor, eval_loader
from cavga.io_utils import atomic_write_json
from cavga.mask_threshold import MASK_QUANTILES, mask_candidates
from cavga.metrics import iou
from cavga.painting import content_only, held_out_images, held_out_normals, predict_painted
from cavga.runfolder import RunData

VARIANTS = ("span", "share")  # t + r (peak - t), cavga's; max(t, r peak), the rejected one


def level_mask(m: np.ndarray, t: float, r: float, variant: str) -> np.ndarray:
    """One map's mask at threshold ``t`` and fraction ``r`` under ``variant``."""
    return peak_mask(m, t, r) if variant == "span" else m >= max(t, r * float(m.max()))


def sweep(predictor: Predictor, maps, masks, labels, variant: str, kinds=None) -> dict[str, dict[str, float]]:
    """IoU by candidate label (``mask_candidates(0, "auto")``), overall and (``kinds``) per painter."""
    groups = {"all": labels.astype(bool)}
    for k in DEFECT_TYPES if kinds is not None else ():
        groups[k] = np.asarray(kinds) == k
    out = {}
    for label, (q, _, r) in mask_candidates(0.0, "auto").items():
        pred = [level_mask(m, predictor.threshold_at_quantile(q), r, variant) for m in maps]
        out[label] = {g: round(iou(pred, masks, sel), 4) for g, sel in groups.items()}
    return out


def chosen(by_label: dict[str, dict[str, float]], with_fraction: bool) -> str:
    """The label ``auto`` takes: the best painted IoU; ties to the lowest fraction, then the quantile nearest 0.99."""
    cands = mask_candidates(0.0, "auto" if with_fraction else 0.0)
    return max(cands, key=lambda k: (by_label[k]["all"], -cands[k][2], -abs(cands[k][0] - 0.99)))


def test_maps(predictor: Predictor, run: Path) -> tuple[list, list, np.ndarray]:
    """The run's test maps and masks at each image's own size, as ``cavga evaluate`` scores them."""
    cfg, test = predictor.cfg, RunData.load(run).test
    maps, records = [], iter(test)
    for batch in eval_loader(test, cfg):
        amap = predictor.predict_batch(batch.image, batch.valid).anomaly_map  # (B, S, S)
        maps += [native_map(amap[i], native_mask(next(records))[0].shape, cfg.data.resize) for i in range(len(amap))]
    return maps, [native_mask(r)[0] for r in test], np.array([r.label for r in test])


def study(run: Path) -> dict:
    predictor = Predictor.from_run(run, "cpu")
    cfg = predictor.cfg
    images, boxes = held_out_images(held_out_normals(run), cfg.data.image_size, cfg.data.resize)
    cols, masks, labels, kinds, boxes = predict_painted(predictor, images, boxes, 0, 2)
    maps, masks = content_only(cols["map"], boxes), content_only(masks, boxes)
    t_maps, t_masks, t_labels = test_maps(predictor, run)
    out = {"model": cfg.model.label}
    for variant in VARIANTS:
        painted = sweep(predictor, maps, masks, labels, variant, kinds)
        base, best = chosen(painted, False), chosen(painted, True)
        test = {}
        for label in (base, best):
            q, _, r = mask_candidates(0.0, "auto")[label]
            pred = [level_mask(m, predictor.threshold_at_quantile(q), r, variant) for m in t_maps]
            test[label] = round(iou(pred, t_masks, t_labels), 4)
        out[variant] = {
            "quantile_alone": base,
            "chosen": best,
            "painted": {"quantile_alone": painted[base], "chosen": painted[best]},
            "test_iou": {"quantile_alone": test[base], "chosen": test[best]},  # read after the choice
        }
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    torch.set_num_threads(min(torch.get_num_threads(), 2))
    rows = {str(run): study(run) for run in args.runs}
    summary = {}
    for variant in VARIANTS:
        s = [row[variant] for row in rows.values()]
        gain = {g: statistics.mean(x["painted"]["chosen"][g] - x["painted"]["quantile_alone"][g] for x in s)
                for g in ("all", *DEFECT_TYPES)}  # fmt: skip
        test = [x["test_iou"]["chosen"] - x["test_iou"]["quantile_alone"] for x in s]
        summary[variant] = {
            "painted_gain": round(gain["all"], 4),
            "painted_gain_by_painter": {k: round(gain[k], 4) for k in DEFECT_TYPES},
            "adopt": gain["all"] >= 0.02 and sum(gain[k] > 0 for k in DEFECT_TYPES) >= 3,
            "test_gain": round(statistics.mean(test), 4),
            "test_up": sum(x > 0 for x in test),
            "test_down": sum(x < 0 for x in test),
        }
    print("| run | model | quantile alone | chosen | painted IoU | test IoU |")
    print("|---|---|---|---|---|---|")
    for run, row in rows.items():
        x = row["span"]
        p, t = x["painted"], x["test_iou"]
        print(f"| {'/'.join(Path(run).parts[-2:])} | {row['model'][:8]} | {x['quantile_alone']} | {x['chosen']} | "
              f"{p['quantile_alone']['all']:.3f} → {p['chosen']['all']:.3f} | "
              f"{t['quantile_alone']:.3f} → {t['chosen']:.3f} |")  # fmt: skip
    for variant, s in summary.items():
        print(f"{variant}: {s}")
    atomic_write_json(args.out, {"quantiles": list(MASK_QUANTILES), "runs": rows, "summary": summary})
    print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
