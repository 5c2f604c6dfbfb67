"""The same-run residual baseline read through CAVGA's map blur: does the paper's central claim
(the attention localises better than the run's own reconstruction residual) rest on the blur that
only the attention gets? A diagnosis only: it trains nothing and sets nothing.

``cavga evaluate`` scores every run's residual |x - x_hat| beside its map, unblurred, its mask at
half the highest residual of the held-out normals. CAVGA's map is blurred by ``infer.map_blur``
(4 px) before it is scored. This script scores the residual of each run's test split both ways:
as evaluate does (sigma 0) and blurred by the run's ``infer.map_blur`` at the model's resolution,
its mask threshold then half the highest *blurred* held-out residual (no test label sets it).

    OMP_NUM_THREADS=2 python benchmarks/residual_blur.py runs/s52/bottle-Du-seed0-fade0.3 ... \
        --out benchmarks/results/issue8/residual-blur-s57.json
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from run_rows import main_over_runs, stored_metrics

from cavga.attention import gaussian_blur
from cavga.config.resolve import map_blur
from cavga.evaluate import native_mask, residual_baseline
from cavga.image_scores import content_mean, native_map, reconstruction_score
from cavga.inference import Predictor, eval_loader
from cavga.runfolder import RunData

KEYS = ("pixel_auroc", "aupro", "iou")


def residual_both_ways(run: Path) -> dict:
    """The run's residual baseline at sigma 0 and at its ``infer.map_blur``, and its map's stored metrics."""
    predictor = Predictor.from_run(run, "cpu")
    cfg, data = predictor.cfg, RunData.load(run)
    sigmas = (0.0, map_blur(cfg))

    def residuals(records):  # (N, S, S) per sigma, the raw image scores, labels, (H, W) masks
        maps, raw, labels, masks, real = {s: [] for s in sigmas}, [], [], [], []
        for batch in eval_loader(records, cfg):
            pred = predictor.predict_batch(batch.image, batch.valid)
            residual = reconstruction_score(batch.image, pred.reconstruction, batch.valid)[0]  # (B, S, S), unblurred
            for s in sigmas:
                maps[s].append(gaussian_blur(residual, s))  # (B, S, S)
            raw.append(content_mean(residual, batch.valid))  # (B,)
            labels.append(batch.label)
        for r in records:
            gt, has = native_mask(r)
            masks.append(gt)
            real.append(has)
        return {s: torch.cat(m) for s, m in maps.items()}, torch.cat(raw), torch.cat(labels).numpy(), masks, real

    held, *_ = residuals([r for r in data.val if r.label == 0])
    test, raw, labels, masks, real = residuals(data.test)
    out = {"run": str(run), "model": cfg.model.label, "map_blur": sigmas[1]}
    for s in sigmas:
        peak = float(held[s].flatten(1).amax(dim=1).max())  # evaluate's residual_peak, of this map
        maps = [native_map(m, g.shape, cfg.data.resize) / peak for m, g in zip(test[s], masks, strict=True)]
        metrics = residual_baseline(predictor, raw.numpy(), labels, maps, masks, np.array(real))
        out[f"residual_sigma{s:g}"] = {k: round(float(metrics[k]), 4) for k in KEYS}
    stored = stored_metrics(run)  # the map's own numbers, as evaluate stored them
    if stored is not None:
        out["map"] = {k: stored["metrics"].get(k) for k in KEYS}
    return out


def table_line(run: Path, r: dict) -> str:
    """One printed row: the map's numbers, then the residual's at sigma 0 and at the map's blur."""
    cells = [r.get("map", {}).get(k) for k in KEYS]
    cells += [r[f"residual_sigma{s:g}"][k] for s in (0.0, r["map_blur"]) for k in KEYS]
    return f"| {run} | " + " | ".join("" if c is None else f"{c:.3f}" for c in cells) + " |"


def main(argv: list[str] | None = None) -> int:
    return main_over_runs(__doc__, residual_both_ways, table_line, argv=argv)


if __name__ == "__main__":
    raise SystemExit(main())
