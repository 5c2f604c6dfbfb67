"""The paper's evaluation of a trained run on its test split (Sec. 4, "Training and evaluation").

Beside CAVGA's own numbers it measures, from the same forward pass, the trivial baseline the
attention has to beat: the per-pixel reconstruction difference |x - x_hat| as the anomaly map and
its mean as the image score (the AE-style localisation of [6, 48]).  Its mask threshold is half the
highest residual seen on held-out normal images, so neither method looks at test labels.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from .inference import Predictor, eval_loader
from .io_utils import atomic_write_json
from .metrics import compute_metrics, iou
from .train import RunData

METRICS_FILE = "metrics.json"
METRIC_KEYS = ("image_auroc", "pixel_auroc", "iou", "detection_accuracy", "aupro", "f1_max")


def evaluate_run(
    run_dir: str | Path, device: str = "auto", progress: bool = True, overlays: int = 8, infer: list[str] | None = None
) -> dict[str, Any]:
    """Predict the run's test split, write ``metrics.json`` and a few overlays; return the result.

    ``infer``: ``infer.*`` overrides (thresholds, normaliser quantile) for this evaluation only."""
    run_dir = Path(run_dir)
    predictor = Predictor.from_run(run_dir, device, infer)
    cfg = predictor.cfg
    run_data = RunData.load(run_dir)
    peak = predictor.normalizer.residual_peak if predictor.normalizer else None

    cols: dict[str, list] = {
        k: [] for k in ("score", "label", "pred", "map", "mask", "has_mask", "pmask", "raw", "res", "defect", "path")
    }
    show = set(_overlay_picks(run_data.test, overlays))
    for batch in tqdm(eval_loader(run_data.test, cfg), desc="evaluate", disable=not progress):
        pred = predictor.predict_batch(batch.image)
        residual = pred.residual_map  # (B, S, S)
        cols["score"].append(pred.score)
        cols["label"].append(batch.label)
        cols["pred"].append(pred.label)
        cols["map"].append(pred.anomaly_map.numpy().astype(np.float32))
        cols["mask"].append(batch.mask[:, 0].numpy() > 0.5)
        cols["has_mask"].append(batch.has_mask.numpy())
        cols["pmask"].append(pred.mask.numpy())
        cols["raw"].append(residual.flatten(1).mean(dim=1))
        cols["res"].append(residual.numpy().astype(np.float32))
        cols["defect"] += batch.defect_type
        cols["path"] += batch.path
        if show & set(batch.path):
            _save_overlays(run_dir / "overlays", batch, pred, show)

    labels = torch.cat(cols["label"]).numpy()
    maps, masks, has_mask = np.concatenate(cols["map"]), np.concatenate(cols["mask"]), np.concatenate(cols["has_mask"])
    pred_masks = np.concatenate(cols["pmask"])
    cavga = compute_metrics(
        scores=torch.cat(cols["score"]).numpy(),
        labels=labels,
        pred_labels=torch.cat(cols["pred"]).numpy(),
        anomaly_maps=maps,
        masks=masks,
        pred_masks=pred_masks,
        has_mask=has_mask,
    )
    residual_maps = np.concatenate(cols["res"])  # (N, S, S)
    recon = torch.cat(cols["raw"])
    if peak:
        residual_maps = np.clip(residual_maps / peak, 0.0, 1.0)
    baseline = compute_metrics(
        scores=recon.numpy(),
        labels=labels,
        pred_labels=(predictor.normalizer(recon) >= cfg.infer.score_threshold).long().numpy()
        if predictor.normalizer
        else np.zeros_like(labels),
        anomaly_maps=residual_maps,
        masks=masks,
        pred_masks=residual_maps >= 0.5,
        has_mask=has_mask,
    )
    result = {
        "run": str(run_dir),
        "model": cfg.model.label,
        "image_size": cfg.data.image_size,
        "metrics": _clean(cavga),
        "baseline_residual": _clean(baseline),
        "per_defect_iou": _per_defect_iou(pred_masks, masks, has_mask, labels, cols["defect"]),
        "split": run_data.info,
        "seed": cfg.data.seed,
        "thresholds": {
            "mask": predictor.mask_threshold,
            "mask_quantile": cfg.infer.mask_quantile,
            "score": cfg.infer.score_threshold,
            "normalizer_quantile": cfg.infer.normalizer_quantile,
        },
        "normalizer": {k: v for k, v in predictor.normalizer.to_dict().items() if k not in ("scores", "map_quantiles")}
        if predictor.normalizer
        else None,
    }
    atomic_write_json(run_dir / METRICS_FILE, result)
    return result


def _clean(metrics: dict[str, Any]) -> dict[str, Any]:
    """NaN is not JSON: undefined metrics become null (their names stay listed under "undefined")."""
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in metrics.items()}


def _per_defect_iou(pred_masks, masks, has_mask, labels, defects) -> dict[str, float]:
    out = {}
    defects = np.asarray(defects)
    for d in sorted(set(defects[labels == 1])):
        sel = (defects == d) & has_mask & (labels == 1)
        if sel.any():
            out[str(d)] = round(float(iou(pred_masks[sel], masks[sel], labels[sel])), 4)
    return out


def _overlay_picks(records, n: int) -> list[str]:
    """Up to ``n`` test images to draw: anomalous ones spread over the defect types, then two normal."""
    anomalous = [r for r in records if r.label == 1]
    by_type: dict[str, list[str]] = {}
    for r in anomalous:
        by_type.setdefault(r.defect_type, []).append(r.image_path)
    picks: list[str] = []
    while len(picks) < max(n - 2, 0) and any(by_type.values()):
        for paths in by_type.values():
            if paths and len(picks) < n - 2:
                picks.append(paths.pop(0))
    return picks + [r.image_path for r in records if r.label == 0][: n - len(picks)]


def _save_overlays(folder: Path, batch, pred, show: set[str]) -> None:
    from .visualize import comparison_strip, save_png

    for i, path in enumerate(batch.path):
        if path not in show:
            continue
        gt = batch.mask[i, 0].numpy() > 0.5 if bool(batch.has_mask[i]) else None
        strip = comparison_strip(
            batch.image[i], pred.reconstruction[i], pred.anomaly_map[i].numpy(), pred.mask[i].numpy(), gt
        )
        save_png(strip, folder / f"{batch.defect_type[i]}_{Path(path).stem}.png")


def format_table(results: list[dict[str, Any]], with_baseline: bool = True) -> str:
    """A markdown table: one row per run (and its residual baseline), one column per metric."""
    head = "| model | " + " | ".join(METRIC_KEYS) + " |"
    lines = [head, "|" + "---|" * (len(METRIC_KEYS) + 1)]

    def row(name: str, m: dict[str, Any]) -> str:
        return f"| {name} | " + " | ".join("n/a" if m.get(k) is None else f"{m[k]:.3f}" for k in METRIC_KEYS) + " |"

    for r in results:
        lines.append(row(r["model"], r["metrics"]))
        if with_baseline:
            lines.append(row("residual baseline", r["baseline_residual"]))
    return "\n".join(lines)
