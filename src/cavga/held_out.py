"""The held-out fit: on normal images the model did not train on, the score normaliser and the
statistics of the anomaly map (its quantiles, peaks, the residual's peak) that turn raw scores into
verdicts and maps into masks without a test image (docs/method.md, "Inference")."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from . import data as D
from .attention import content_blur, image_map
from .config import RunConfig
from .config.resolve import map_blur
from .evidence import anomaly_evidence
from .image_scores import (
    MAP_QUANTILE_LEVELS,
    MAP_VERSION,
    Normalizer,
    bce_score,
    map_peak,
    native_map,
    reconstruction_score,
)
from .map_choice import resolved_direction, resolved_enlarged, resolved_shifted, resolved_weak_map
from .networks import CAVGA


def eval_loader(records: list[D.Record], cfg: RunConfig) -> torch.utils.data.DataLoader:
    """Batches of ``records`` in order, at the run's image size and inference batch size."""
    return D.make_loader(
        records, cfg.data.image_size, cfg.infer.batch_size, False, cfg.train.num_workers, resize=cfg.data.resize
    )


def fit_normalizer(
    model: CAVGA | None,
    records: list[D.Record],
    cfg: RunConfig,
    device: torch.device,
    evidence=None,
    level: Tensor | None = None,
) -> dict[str, Any] | None:
    """Fit the score normaliser and the map quantiles on normal images the model did not train on
    (the held-out ones; the training normals only when ``data.val_fraction`` is 0). The quantiles
    pool the held-out maps at each image's own resolution, where maps are scored and thresholded.

    ``evidence(x)`` replaces CAVGA's forward pass for a baseline: it returns the anomaly map
    (B, S, S) in [0, 1], the raw image score (B,) and the reconstruction (B, 3, S, S) or None.
    ``level``: the attention's normal level (S, S), for the two-sided map (:mod:`cavga.normal_level`)."""
    records = [r for r in records if r.label == 0]
    if not records:
        return None
    raws, peaks, maps, probs, map_max, map_min, bces = [], [], [], [], [], [], []
    for batch in eval_loader(records, cfg):
        x = batch.image.to(device)
        valid = None if batch.valid is None else batch.valid.to(device)  # (B, 1, S, S)
        if evidence is None:
            read = resolved_direction(cfg), resolved_weak_map(cfg), resolved_shifted(cfg), resolved_enlarged(cfg)
            amap, x_hat, p_anomalous = anomaly_evidence(model, x, *read, level)
            probs += [] if p_anomalous is None else p_anomalous.cpu().tolist()
            amap = image_map(amap, cfg.data.image_size, map_blur(cfg), valid)  # (B, S, S), as predict_batch
        else:
            amap, raw, x_hat = evidence(x)  # (B, S, S), (B,), (B, 3, S, S) or None
        residual, recon = reconstruction_score(x, x if x_hat is None else x_hat, valid)  # (B, S, S), (B,)
        raws.append((recon if evidence is None else raw).cpu())
        bces += [] if evidence is not None else bce_score(x, x_hat, valid).cpu().tolist()
        map_max += map_peak(amap, valid).cpu().tolist()
        map_min += map_peak(amap, valid, lowest=True).cpu().tolist()
        peaks.append(content_blur(residual, map_blur(cfg), valid).flatten(1).amax(dim=1).cpu())  # as residual_blur
        amap = amap.cpu()
        maps += [
            native_map(m, D.image_size_of(p), cfg.data.resize).ravel() for m, p in zip(amap, batch.path, strict=True)
        ]
    raw = torch.cat(raws).numpy()
    map_quantiles = np.quantile(np.concatenate(maps), np.linspace(0.0, 1.0, MAP_QUANTILE_LEVELS))
    norm = Normalizer.fit(
        raw,
        cfg.infer.normalizer_quantile,
        float(torch.cat(peaks).max()),
        [float(v) for v in map_quantiles],
        cfg.infer.normalizer_rank,
    )
    norm.classifier_scores, norm.bce_scores = [float(p) for p in probs], bces
    norm.map_max, norm.map_min, norm.weak_map = map_max, map_min, resolved_weak_map(cfg)
    norm.direction, norm.map_version, norm.shifted = resolved_direction(cfg), MAP_VERSION, resolved_shifted(cfg)
    norm.enlarged, norm.blur = resolved_enlarged(cfg), map_blur(cfg)
    return norm.to_dict()
