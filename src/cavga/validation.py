"""Validation without real anomalies: synthetic defects painted on held-out normal images.

Settings (loss weights, attention layer and score, image size, epochs, mask quantile) are chosen
here, never on a test split and never with real anomalies.  ``validate_run`` takes the normal
training images the run held out (``split.json``'s ``val``; never trained on), and for each one
scores the clean image (label 0) and ``copies`` versions with one painted defect each (label 1,
exact masks): the demo's painters (scratch, hole, stain, foreign patch) at the model's resolution.

The score normaliser and the mask quantile of a CAVGA-u run are fitted on the same clean held-out
images, so the threshold-free numbers (pixel AUROC, AUPRO, F1-max, image AUROC) are the ones to
choose settings by; IoU and detection accuracy are shown for completeness.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import data as D
from .attention import upsample
from .demo_data import DEFECT_TYPES, paint_defect, texture
from .errors import CavgaError
from .evaluate import METRIC_KEYS, residual_baseline
from .inference import Predictor, anomaly_evidence
from .io_utils import atomic_write_json
from .metrics import compute_metrics, iou, pixel_auroc
from .networks import CAVGA
from .runfolder import RunData

VALIDATION_FILE = "validation.json"
# infer.mask_quantile values whose validation IoU `cavga validate` reports (the default is 0.99)
MASK_QUANTILES = (0.9, 0.95, 0.98, 0.99, 0.995, 0.999)
FOREIGN_TEXTURE = "gravel"  # the source of the "patch" defect's foreign texture


def paint_validation_set(
    images: torch.Tensor, seed: int = 0, copies: int = 2
) -> tuple[torch.Tensor, np.ndarray, np.ndarray, list[str]]:
    """Clean ``images`` (N, 3, S, S) in [0, 1] plus ``copies`` painted versions of each.

    Returns (images (M, 3, S, S), masks (M, S, S) bool, labels (M,), defect types), M = N * (1 + copies);
    defect types cycle through DEFECT_TYPES."""
    rng = np.random.default_rng(seed)
    other = texture(FOREIGN_TEXTURE)
    n, _, s, _ = images.shape
    out, masks, kinds = [images], [np.zeros((n, s, s), dtype=bool)], ["good"] * n
    for c in range(copies):
        for i in range(n):
            kind = DEFECT_TYPES[(c * n + i) % len(DEFECT_TYPES)]
            img = images[i].permute(1, 2, 0).numpy() * 255.0  # (S, S, 3)
            img = np.ascontiguousarray(img, dtype=np.float32)
            masks.append(paint_defect(kind, img, rng, other)[None])  # (1, S, S)
            out.append(torch.from_numpy(np.clip(img, 0, 255) / 255.0).permute(2, 0, 1)[None].float())
            kinds.append(kind)
    labels = np.array([0] * n + [1] * (n * copies))
    return torch.cat(out), np.concatenate(masks), labels, kinds


def held_out_images(records: list[D.Record], size: int) -> torch.Tensor:
    """The normal images among ``records`` (a run's held-out split), (N, 3, S, S) in [0, 1]."""
    return torch.stack([D.load_image(r.image_path, size) for r in records if r.label == 0])


def choose_attention_direction(
    model: CAVGA, images: torch.Tensor, batch_size: int, device: torch.device, seed: int = 0, copies: int = 2
) -> dict[str, Any]:
    """``infer.attention_direction: auto``: the direction of CAVGA-u's map, decided on painted defects.

    ``images`` are held-out normals (N, 3, S, S). The paper's 1 - A is kept unless its pixel AUROC
    on the painted set is below 0.5, i.e. unless the attention *rises* on defects; then A is used.
    Since the upsampling is linear and the clamp symmetric, A's AUROC is 1 minus that of 1 - A."""
    x, masks, _, _ = paint_validation_set(images, seed, copies)
    maps = []
    for i in range(0, len(x), batch_size):
        amap, _, _ = anomaly_evidence(model, x[i : i + batch_size].to(device), "inverse")  # (B, 1, h, w)
        maps.append(upsample(amap, x.shape[-1]).squeeze(1).clamp(0, 1).cpu().numpy())  # (B, S, S)
    auroc = pixel_auroc(np.concatenate(maps), masks)
    direction = "inverse" if auroc >= 0.5 else "direct"
    return {
        "attention_direction": direction,
        "validation_pixel_auroc": round(auroc if direction == "inverse" else 1.0 - auroc, 4),
        "protocol": f"{len(images)} held-out normals + {copies} painted copies each, seed {seed}",
    }


def validate_run(
    run_dir: str | Path, device: str = "auto", seed: int = 0, copies: int = 2, infer: list[str] | None = None
) -> dict[str, Any]:
    """Score the run's held-out normals, clean and with painted defects; write ``validation.json``."""
    run_dir = Path(run_dir)
    predictor = Predictor.from_run(run_dir, device, infer)
    cfg = predictor.cfg
    held_out = [r for r in RunData.load(run_dir).val if r.label == 0]
    if not held_out:
        raise CavgaError(f"{run_dir}: the run held out no normal images to validate on (data.val_fraction is 0)")
    images = held_out_images(held_out, cfg.data.image_size)  # (N, 3, S, S)
    x, masks, labels, kinds = paint_validation_set(images, seed, copies)
    cols: dict[str, list] = {k: [] for k in ("raw", "pred", "map", "pmask", "res")}
    for i in range(0, len(x), cfg.infer.batch_size):
        pred = predictor.predict_batch(x[i : i + cfg.infer.batch_size])
        cols["raw"].append(pred.raw_score.numpy())
        cols["pred"].append(pred.label.numpy())
        cols["map"].append(pred.anomaly_map.numpy())
        cols["pmask"].append(pred.mask.numpy())
        cols["res"].append(pred.residual_map.numpy())
    maps, res = np.concatenate(cols["map"]), np.concatenate(cols["res"])  # (M, S, S)
    recon = res.reshape(len(res), -1).mean(axis=1)  # (M,) the residual's raw image score
    peak = predictor.normalizer.residual_peak if predictor.normalizer else float(res.max())
    res = np.clip(res / max(peak, 1e-12), 0.0, 1.0)  # scaled as evaluate scales it
    raw = np.concatenate(cols["raw"])
    metrics = compute_metrics(raw, labels, np.concatenate(cols["pred"]), maps, masks, np.concatenate(cols["pmask"]))
    baseline = residual_baseline(predictor, recon, labels, list(res), masks)
    kinds_arr = np.asarray(kinds)
    per_defect = {}
    for k in DEFECT_TYPES:
        sel = (kinds_arr == k) | (labels == 0)  # this defect type against the clean images
        if (kinds_arr == k).any():
            per_defect[k] = {
                "pixel_auroc": round(pixel_auroc(maps[sel], masks[sel]), 4),
                "residual_pixel_auroc": round(pixel_auroc(res[sel], masks[sel]), 4),
            }
    result = {
        "run": str(run_dir),
        "model": cfg.model.label,
        "protocol": f"held-out normals ({len(held_out)}) + {copies} painted copies each, seed {seed}",
        "image_size": cfg.data.image_size,
        "attention_direction": cfg.infer.attention_direction if cfg.model.has_attention_direction else None,
        "metrics": {k: metrics[k] for k in METRIC_KEYS},
        "baseline_residual": {k: baseline[k] for k in METRIC_KEYS} if predictor.has_reconstruction else None,
        "per_defect": per_defect,
        "mask_quantile_iou": _mask_quantile_iou(predictor, maps, masks, labels),
    }
    atomic_write_json(run_dir / VALIDATION_FILE, result)
    return result


def _mask_quantile_iou(predictor: Predictor, maps: np.ndarray, masks: np.ndarray, labels: np.ndarray) -> dict | None:
    """Validation IoU for each of MASK_QUANTILES: how much of the map a mask should keep, chosen on
    painted defects. The threshold-free metrics above do not depend on it; only the masks do."""
    if predictor.normalizer is None or not predictor.normalizer.map_quantiles:
        return None
    return {str(q): round(iou(maps >= predictor.threshold_at_quantile(q), masks, labels), 4) for q in MASK_QUANTILES}
