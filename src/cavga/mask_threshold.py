"""The mask threshold chosen on painted defects (``infer.mask_quantile: auto``, ``infer.mask_margin``).

How much of a map the mask keeps depends on the map, so ``auto`` takes the threshold whose masks
overlap painted defects on the held-out normals best (docs/method.md, "The mask threshold").
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from . import data as D
from .inference import Predictor
from .map_choice import AUTO_SETTINGS
from .metrics import iou
from .painting import content_only, held_out_images, predict_painted, protocol_text

# infer.mask_quantile values whose validation IoU `cavga validate` reports, and "auto" chooses from
# (the top two after bottle's CAVGA-Ru runs chose 0.999, the highest, with the IoU still rising)
MASK_QUANTILES = (0.9, 0.95, 0.98, 0.99, 0.995, 0.999, 0.9995, 0.9999)
# infer.mask_margin values "auto" weighs at quantile 1.0 (the highest held-out normal pixel): the
# masks of thresholds above every normal pixel, where the painted IoU of 0.9999 was still rising
MASK_MARGINS = (0.0, 0.025, 0.05, 0.1, 0.2)


def mask_candidates(margin: float | str = 0.0) -> dict[str, tuple[float, float]]:
    """The (mask quantile, mask margin) pairs an auto mask quantile chooses from, by label ("0.99",
    "1.0+0.05"): MASK_QUANTILES at ``margin`` (0 for "auto"), and with "auto" also quantile 1.0
    raised by each of MASK_MARGINS."""
    fixed = 0.0 if margin == "auto" else float(margin)
    out = {mask_label(q, fixed): (q, fixed) for q in MASK_QUANTILES}
    if margin == "auto":
        out.update({mask_label(1.0, f): (1.0, f) for f in MASK_MARGINS})
    return out


def mask_label(quantile: float, margin: float) -> str:
    """How the validation sweep names a mask threshold: "0.99", "1.0+0.05"."""
    return f"{quantile}+{margin}" if margin else str(quantile)


def decide_mask_quantile(
    predictor: Predictor,
    images: torch.Tensor,
    boxes: list[D.geometry.Box] | None = None,
    seed: int = 0,
    copies: int = 2,
    margin: float | str = 0.0,
) -> dict[str, dict[str, Any]]:
    """``infer.mask_quantile: auto``: of :func:`mask_candidates`, the threshold whose masks overlap
    the painted defects on the held-out normals ``images`` best (mean IoU, as ``cavga validate``
    prints it for each; ties go to the lowest margin, then the quantile nearest the former default
    0.99). ``predictor`` holds the run's other settings as decided and its held-out map statistics.
    ``margin`` is ``infer.mask_margin`` as the run asked it. Returns the checkpoint's decisions:
    "mask_quantile", and "mask_margin" where that is auto too."""
    cols, masks, labels, _, boxes = predict_painted(predictor, images, boxes, seed, copies)
    by_q = mask_quantile_iou(predictor, content_only(cols["map"], boxes), content_only(masks, boxes), labels, margin)
    if by_q is None:  # no held-out map statistics to threshold by
        return _fallback_mask_decisions(margin, "no held-out map statistics")
    candidates = mask_candidates(margin)
    best = max(candidates, key=lambda k: (by_q[k], -candidates[k][1], -abs(candidates[k][0] - 0.99)))
    quantile, chosen_margin = candidates[best]
    protocol = protocol_text(len(images), copies, seed)
    out = {"mask_quantile": {"mask_quantile": quantile, "validation_iou": by_q, "protocol": protocol}}
    if margin == "auto":
        out["mask_margin"] = {"mask_margin": chosen_margin, "protocol": protocol}
    return out


def _fallback_mask_decisions(margin: float | str, why: str) -> dict[str, dict[str, Any]]:
    """The mask decisions where nothing could be measured: the AUTO_SETTINGS values."""
    out = {"mask_quantile": {"mask_quantile": AUTO_SETTINGS["mask_quantile"], "protocol": why}}
    if margin == "auto":
        out["mask_margin"] = {"mask_margin": AUTO_SETTINGS["mask_margin"], "protocol": why}
    return out


def decide_held_out_mask_quantile(
    predictor: Predictor, records: list[D.Record], margin: float | str = 0.0
) -> dict[str, dict[str, Any]]:
    """:func:`decide_mask_quantile` on the normal images among a run's held-out ``records``, for the
    checkpoint at the end of training (CAVGA's and the baselines')."""
    held_out = [r for r in records if r.label == 0]
    if not held_out:
        return _fallback_mask_decisions(margin, "no held-out normals")
    cfg = predictor.cfg
    images, boxes = held_out_images(held_out, cfg.data.image_size, cfg.data.resize)  # (N, 3, S, S)
    return decide_mask_quantile(predictor, images, boxes, margin=margin)


def mask_quantile_iou(
    predictor: Predictor, maps: list, masks: list, labels: np.ndarray, margin: float | str = 0.0
) -> dict | None:
    """Validation IoU for each of :func:`mask_candidates`: how much of the map a mask should keep,
    chosen on painted defects. The threshold-free metrics above do not depend on it; only the masks do."""
    if predictor.normalizer is None or not predictor.normalizer.map_quantiles:
        return None
    return {
        label: round(iou([m >= predictor.threshold_at_quantile(q, f) for m in maps], masks, labels), 4)
        for label, (q, f) in mask_candidates(margin).items()
    }
