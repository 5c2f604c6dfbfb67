"""The same-run residual's mask threshold decided on painted defects, as the attention's is: does the
IoU half of the paper's central claim (the attention localises better than the run's own
reconstruction residual) rest on the residual's fixed threshold? A diagnosis: it trains nothing and
sets nothing.

``cavga evaluate`` masks the residual |x - x_hat| (scaled by the highest held-out residual) at 0.5,
a rule fixed in advance, while the attention's threshold is chosen on the held-out normals with
painted defects (``infer.mask_quantile`` / ``mask_peak_fraction`` ``auto``, faded by
``infer.mask_fade``; :mod:`cavga.mask_threshold`). This script gives the residual the same choice
(:func:`cavga.mask_threshold.decide_residual_mask`, which training's end makes since session 58: the
map's candidates, quantiles of the held-out normals' residual pixels each raised towards each map's
peak by each peak fraction, and the fixed rule, on the same painted set), then scores the test
split's residual masks both ways. No test label chooses anything.

    OMP_NUM_THREADS=2 python benchmarks/residual_mask.py runs/demo/run runs/s58/bottle-Du-seed0 ... \\
        --out benchmarks/results/issue8/residual-mask-s58.json
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from run_rows import main_over_runs, stored_metrics

from cavga.config.resolve import mask_fade
from cavga.evaluate import native_mask, residual_baseline
from cavga.image_scores import native_map
from cavga.inference import Predictor, eval_loader
from cavga.mask_threshold import FIXED_RESIDUAL_LABEL, decide_residual_mask
from cavga.painting import content_only, held_out_images, held_out_normals, predict_painted, protocol_text
from cavga.runfolder import RunData

KEYS = ("pixel_auroc", "aupro", "iou", "f1_max")


def painted_choice(predictor: Predictor, run: Path) -> dict:
    """The residual's mask level as training's end now decides it (:func:`decide_residual_mask`: the
    map's candidates and the fixed rule, on the run's painted held-out normals), made here for runs
    fitted before it was decided."""
    cfg = predictor.cfg
    images, boxes = held_out_images(held_out_normals(run), cfg.data.image_size, cfg.data.resize)  # (N, 3, S, S)
    cols, masks, labels, _, pboxes = predict_painted(predictor, images, boxes, 0, cfg.infer.mask_copies, mask_fade(cfg))
    decision = decide_residual_mask(
        predictor, content_only(cols["res"], pboxes), content_only(masks, pboxes), labels, cfg.infer.mask_margin, "auto"
    )["residual_mask"]
    decision["painted"] = protocol_text(len(images), cfg.infer.mask_copies, 0, mask_fade(cfg))
    return decision


def residual_both_ways(run: Path) -> dict:
    """The run's residual on its test split masked by evaluate's fixed rule and by the painted choice."""
    predictor = Predictor.from_run(run, "cpu")
    cfg, data = predictor.cfg, RunData.load(run)
    peak = predictor.normalizer.residual_peak
    choice = painted_choice(predictor, run)
    maps, raw, labels, masks, real = [], [], [], [], []
    records = iter(data.test)
    for batch in eval_loader(data.test, cfg):
        pred = predictor.predict_batch(batch.image, batch.valid)
        for m in pred.residual_map:  # (S, S), blurred as the run's map (map version 3) or not (older runs)
            gt, has = native_mask(next(records))
            maps.append(native_map(m, gt.shape, cfg.data.resize) / peak)  # (H, W), unclipped as evaluate's
            masks.append(gt)
            real.append(has)
        raw.append(pred.residual_score.numpy())
        labels.append(batch.label.numpy())
    raw, labels, real = np.concatenate(raw), np.concatenate(labels), np.array(real)
    fixed = residual_baseline(predictor, raw, labels, maps, masks, real)
    painted = residual_baseline(predictor, raw, labels, maps, masks, real, *choice["residual_mask"])
    out = {"run": str(run), "model": cfg.model.label, "residual_blur": predictor.residual_blur, "choice": choice}
    out["residual_fixed"] = {k: round(float(fixed[k]), 4) for k in KEYS}
    out["residual_painted"] = {k: round(float(painted[k]), 4) for k in KEYS}
    stored = stored_metrics(run)  # the map's own numbers, and evaluate's residual, as stored
    if stored is not None:
        out["map"] = {k: stored["metrics"].get(k) for k in KEYS}
        out["stored_residual"] = {k: stored.get("baseline_residual", {}).get(k) for k in KEYS}
    return out


def table_line(run: Path, r: dict) -> str:
    """One printed row: the map's IoU, the residual's at the fixed rule and at the painted choice."""
    c = r["choice"]
    return (
        f"| {run} | {r.get('map', {}).get('iou')} | {r['residual_fixed']['iou']:.3f} | "
        f"{r['residual_painted']['iou']:.3f} ({c['chosen']}) | "
        f"{c['validation_iou'][FIXED_RESIDUAL_LABEL]:.3f} / {c['validation_iou'][c['chosen']]:.3f} |"
    )


HEADER = "| run | map IoU | residual IoU: fixed 0.5 | painted choice (label) | painted IoU: fixed / chosen |"


def main(argv: list[str] | None = None) -> int:
    return main_over_runs(__doc__, residual_both_ways, table_line, HEADER, argv)


if __name__ == "__main__":
    raise SystemExit(main())
