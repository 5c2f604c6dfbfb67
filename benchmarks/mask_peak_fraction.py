"""What ``infer.mask_peak_fraction: auto`` would do to finished runs: the mask threshold chosen on
painted held-out normals with each map's level raised towards its own peak, against the quantile alone.

For each run folder (trained and evaluated; its weights are not changed) this paints the run's
held-out normals as training's end does (seed 0, two copies), sweeps every (mask quantile, peak
fraction) of :func:`cavga.mask_threshold.mask_candidates` by painted IoU (overall and per painter)
and by the share of the clean held-out images it flags, takes the best as each rule would, and
only then scores the run's test split at that threshold and at the quantile-alone choice
(fraction 0): IoU, and how much of the normal test images it flags. The rules: ``span`` (the
level t + r max(p - t, 0), any threshold: cavga's ``auto``), ``span-budget`` (the same, among
thresholds flagging no more of the clean held-out images than the quantile alone; passed the rule
below, failed on real defects, not adopted), and ``share`` (the level max(t, r p), a share of the
map's maximum as CAM papers threshold).

    python benchmarks/mask_peak_fraction.py RUN... --out benchmarks/results/issue8/mask-peak-fraction-s35.json

The decision rule was written before any test number of each rule existed (docs/results.md,
"Session 35"): adopt if the chosen threshold's painted IoU beats the quantile alone by >= 0.02 on
average over the runs, with a gain in at least three of the four painters.
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
from cavga.mask_threshold import MASK_QUANTILES, best_mask_label, mask_candidates
from cavga.metrics import iou
from cavga.painting import content_only, held_out_images, held_out_normals, predict_painted
from cavga.runfolder import RunData

# the rules compared: (name, level variant, no more clean-normal area than the quantile alone)
RULES = (("span", "span", False), ("span-budget", "span", True), ("share", "share", False))
DEFAULT_RULE = "span"  # cavga's infer.mask_peak_fraction: auto


def level_mask(m: np.ndarray, t: float, r: float, variant: str) -> np.ndarray:
    """One map's mask at threshold ``t`` and fraction ``r``: cavga's ``span`` level t + r max(p - t, 0),
    or ``share``, max(t, r p)."""
    return peak_mask(m, t, r) if variant == "span" else m >= max(t, r * float(m.max()))


def sweep(predictor: Predictor, maps, masks, labels, kinds, variant: str) -> dict[str, dict[str, float]]:
    """By candidate label (``mask_candidates(0, "auto")``): the painted IoU overall and per painter,
    and the mean share of a clean image flagged ("normal")."""
    groups = {"all": labels.astype(bool), **{k: np.asarray(kinds) == k for k in DEFECT_TYPES}}
    out = {}
    for label, (q, _, r) in mask_candidates(0.0, "auto").items():
        pred = [level_mask(m, predictor.threshold_at_quantile(q), r, variant) for m in maps]
        out[label] = {g: round(iou(pred, masks, sel), 4) for g, sel in groups.items()}
        out[label]["normal"] = float(np.mean([p.mean() for p, y in zip(pred, labels, strict=True) if y == 0]))
    return out


def chosen(by_label: dict[str, dict[str, float]], with_fraction: bool, budget: bool = False) -> str:
    """The label ``auto`` takes: the best painted IoU (ties: the lowest fraction, then the quantile
    nearest 0.99); with ``budget``, of those flagging no more of the clean images than the quantile alone."""
    cands = mask_candidates(0.0, "auto" if with_fraction else 0.0)
    if budget:
        alone = by_label[chosen(by_label, False)]["normal"]
        cands = {k: v for k, v in cands.items() if by_label[k]["normal"] <= alone}
    return best_mask_label({k: by_label[k]["all"] for k in cands}, cands)


def test_maps(predictor: Predictor, run: Path) -> tuple[list, list, np.ndarray, np.ndarray]:
    """The run's test maps and masks at each image's own size, as ``cavga evaluate`` scores them,
    their labels and the run's verdicts."""
    cfg, test = predictor.cfg, RunData.load(run).test
    maps, verdicts, records = [], [], iter(test)
    for batch in eval_loader(test, cfg):
        pred = predictor.predict_batch(batch.image, batch.valid)
        amap = pred.anomaly_map  # (B, S, S)
        maps += [native_map(amap[i], native_mask(next(records))[0].shape, cfg.data.resize) for i in range(len(amap))]
        verdicts += pred.label.tolist()
    return maps, [native_mask(r)[0] for r in test], np.array([r.label for r in test]), np.array(verdicts)


def painted_maps(predictor: Predictor, run: Path) -> tuple[list, list, np.ndarray, list, np.ndarray]:
    """The run's painted held-out set as training's end paints it (seed 0, two copies): maps and
    masks over each image's content, labels, painter kinds and the run's verdicts."""
    cfg = predictor.cfg
    images, boxes = held_out_images(held_out_normals(run), cfg.data.image_size, cfg.data.resize)
    cols, masks, labels, kinds, boxes = predict_painted(predictor, images, boxes, 0, 2)
    return content_only(cols["map"], boxes), content_only(masks, boxes), labels, kinds, cols["pred"]


def run_studies(argv: list[str] | None, doc: str, study) -> tuple[argparse.Namespace, dict]:
    """The command line of a study over run folders (``RUN... --out JSON``) and ``study(run)`` of each."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    torch.set_num_threads(min(torch.get_num_threads(), 2))
    return args, {str(run): study(run) for run in args.runs}


def on_test(predictor: Predictor, label: str, variant: str, t_maps, t_masks, t_labels) -> dict[str, float]:
    """Test IoU at a chosen threshold, and on the normal test images the share flagged and of them with any flag."""
    q, _, r = mask_candidates(0.0, "auto")[label]
    pred = [level_mask(m, predictor.threshold_at_quantile(q), r, variant) for m in t_maps]
    normal = [p for p, y in zip(pred, t_labels, strict=True) if y == 0]
    return {
        "iou": round(iou(pred, t_masks, t_labels), 4),
        "normal_share": round(float(np.mean([p.mean() for p in normal])), 5),
        "normal_any": round(float(np.mean([p.any() for p in normal])), 3),
    }


def study(run: Path) -> dict:
    predictor = Predictor.from_run(run, "cpu")
    maps, masks, labels, kinds, _ = painted_maps(predictor, run)
    t_maps, t_masks, t_labels, _ = test_maps(predictor, run)
    out = {"model": predictor.cfg.model.label}
    sweeps = {variant: sweep(predictor, maps, masks, labels, kinds, variant) for variant in ("span", "share")}
    for name, variant, budget in RULES:
        painted = sweeps[variant]
        base, best = chosen(painted, False), chosen(painted, True, budget)
        out[name] = {
            "quantile_alone": base,
            "chosen": best,
            "painted": {"quantile_alone": painted[base], "chosen": painted[best]},
            # read after the choice
            "test": {k: on_test(predictor, lab, variant, t_maps, t_masks, t_labels) for k, lab in
                     (("quantile_alone", base), ("chosen", best))},
        }  # fmt: skip
    return out


def summarise(rows: dict) -> dict:
    """Per rule: the painted gains (the adoption rule's inputs) and, read after, the test's."""
    summary = {}
    for name, _, _ in RULES:
        s = [row[name] for row in rows.values()]
        gain = {g: statistics.mean(x["painted"]["chosen"][g] - x["painted"]["quantile_alone"][g] for x in s)
                for g in ("all", *DEFECT_TYPES)}  # fmt: skip
        test = [x["test"]["chosen"]["iou"] - x["test"]["quantile_alone"]["iou"] for x in s]

        def mean(side: str, key: str, where: str = "painted", s: list = s) -> float:
            return round(statistics.mean(x[where][side][key] for x in s), 5)

        summary[name] = {
            "painted_gain": round(gain["all"], 4),
            "painted_gain_by_painter": {k: round(gain[k], 4) for k in DEFECT_TYPES},
            "adopt": gain["all"] >= 0.02 and sum(gain[k] > 0 for k in DEFECT_TYPES) >= 3,
            "held_out_normal_share": {side: mean(side, "normal") for side in ("quantile_alone", "chosen")},
            "test_gain": round(statistics.mean(test), 4),
            "test_up": sum(x > 0 for x in test),
            "test_down": sum(x < 0 for x in test),
            "test_normal_share": {side: mean(side, "normal_share", "test") for side in ("quantile_alone", "chosen")},
            "test_normal_any": {side: mean(side, "normal_any", "test") for side in ("quantile_alone", "chosen")},
        }
    return summary


def main(argv: list[str] | None = None) -> int:
    args, rows = run_studies(argv, __doc__, study)
    summary = summarise(rows)
    print(f"rule {DEFAULT_RULE} (cavga's auto):")
    print("| run | model | quantile alone | chosen | painted IoU | test IoU | normal test images flagged |")
    print("|---|---|---|---|---|---|---|")
    for run, row in rows.items():
        x = row[DEFAULT_RULE]
        p, t = x["painted"], x["test"]
        print(f"| {'/'.join(Path(run).parts[-2:])} | {row['model'][:8]} | {x['quantile_alone']} | {x['chosen']} | "
              f"{p['quantile_alone']['all']:.3f} → {p['chosen']['all']:.3f} | "
              f"{t['quantile_alone']['iou']:.3f} → {t['chosen']['iou']:.3f} | "
              f"{t['quantile_alone']['normal_any']:.2f} → {t['chosen']['normal_any']:.2f} |")  # fmt: skip
    for name, s in summary.items():
        print(f"{name}: {s}")
    atomic_write_json(args.out, {"quantiles": list(MASK_QUANTILES), "runs": rows, "summary": summary})
    print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
