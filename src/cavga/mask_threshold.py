"""The mask threshold chosen on painted defects (``infer.mask_quantile: auto``, ``infer.mask_margin``).

How much of a map the mask keeps depends on the map, so ``auto`` takes the threshold whose masks
overlap painted defects on the held-out normals best (docs/method.md, "The mask threshold").
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from . import data as D
from .config.resolve import mask_fade
from .image_scores import FIXED_RESIDUAL_LEVEL, level_above, peak_mask
from .inference import Predictor
from .map_choice import AUTO_SETTINGS
from .metrics import iou
from .min_area import area_rule_threshold
from .painting import content_only, held_out_images, predict_painted, protocol_text

# infer.mask_quantile values whose validation IoU `cavga validate` reports, and "auto" chooses from
# (the top two after bottle's CAVGA-Ru runs chose 0.999, the highest, with the IoU still rising)
MASK_QUANTILES = (0.9, 0.95, 0.98, 0.99, 0.995, 0.999, 0.9995, 0.9999)
# infer.mask_margin values "auto" weighs at quantile 1.0 (the highest held-out normal pixel): the
# masks of thresholds above every normal pixel, where the painted IoU of 0.9999 was still rising
MASK_MARGINS = (0.0, 0.025, 0.05, 0.1, 0.2)
# infer.mask_peak_fraction values "auto" weighs with each of the above: how far each map's threshold
# rises towards its own peak (session 35, on 32 stored bottle runs; docs/method.md)
MASK_PEAK_FRACTIONS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)


def mask_candidates(margin: float | str = 0.0, fraction: float | str = 0.0) -> dict[str, tuple[float, float, float]]:
    """The (mask quantile, mask margin, peak fraction) an auto mask quantile chooses from, by label
    ("0.99", "1.0+0.05", "0.9@0.5"): MASK_QUANTILES at ``margin`` (0 for "auto"), with "auto" also
    quantile 1.0 raised by each of MASK_MARGINS; each at ``fraction``, or at every one of
    MASK_PEAK_FRACTIONS where that is "auto"."""
    fixed = 0.0 if margin == "auto" else float(margin)
    pairs = [(q, fixed) for q in MASK_QUANTILES]
    if margin == "auto":
        pairs += [(1.0, f) for f in MASK_MARGINS]
    fractions = MASK_PEAK_FRACTIONS if fraction == "auto" else (float(fraction),)
    return {mask_label(q, f, r): (q, f, r) for r in fractions for q, f in pairs}


def mask_label(quantile: float, margin: float, fraction: float = 0.0) -> str:
    """How the validation sweep names a mask threshold: "0.99", "1.0+0.05", "0.9@0.5" (peak fraction 0.5)."""
    label = f"{quantile}+{margin}" if margin else str(quantile)
    return f"{label}@{fraction}" if fraction else label


def mask_sweep_text(sweep: dict[str, float]) -> str:
    """A validation sweep for one line: every threshold when it weighs one peak fraction, else the
    best threshold at each fraction (the full sweep stays in validation.json)."""
    by_fraction: dict[str, dict[str, float]] = {}
    for label, value in sweep.items():
        by_fraction.setdefault(label.partition("@")[2] or "0", {})[label] = value
    if len(by_fraction) == 1:
        return ", ".join(f"{k}: {v}" for k, v in sweep.items())
    best = (max(group.items(), key=lambda kv: kv[1]) for group in by_fraction.values())
    return "best at each peak fraction: " + ", ".join(f"{k}: {v}" for k, v in best)


def decide_mask_quantile(
    predictor: Predictor,
    images: torch.Tensor,
    boxes: list[D.geometry.Box] | None = None,
    seed: int = 0,
    copies: int = 2,
    margin: float | str = 0.0,
    fraction: float | str = 0.0,
    fade: float = 1.0,
) -> dict[str, dict[str, Any]]:
    """``infer.mask_quantile: auto``: of :func:`mask_candidates`, the threshold whose masks overlap
    the painted defects on the held-out normals ``images`` best (mean IoU, as ``cavga validate``
    prints it for each; ties go to the lowest margin, then the lowest peak fraction, then the
    quantile nearest the former default 0.99); the share of a clean held-out image each flags is
    stored beside (raised towards the peak, a lower quantile flags more of a normal image; docs/method.md).
    ``predictor`` holds the run's other settings as decided and its held-out map statistics.
    ``margin`` and ``fraction`` are ``infer.mask_margin`` and ``infer.mask_peak_fraction`` as the
    run asked them. Returns the checkpoint's decisions: "mask_quantile", and "mask_margin" and
    "mask_peak_fraction" where those are auto too."""
    cols, masks, labels, _, boxes = predict_painted(predictor, images, boxes, seed, copies, fade)
    maps, masks = content_only(cols["map"], boxes), content_only(masks, boxes)
    protocol = protocol_text(len(images), copies, seed, fade)
    residual = decide_residual_mask(predictor, content_only(cols["res"], boxes), masks, labels, margin, fraction)
    if residual:
        residual["residual_mask"]["protocol"] = protocol
    if predictor.mask_min_area > 0 and predictor.normalizer is not None and predictor.normalizer.map_quantiles:
        return residual | area_rule_decisions(predictor, maps, masks, labels, margin, fraction, protocol)
    sweep = mask_sweep(predictor, maps, masks, labels, margin, fraction)
    if sweep is None:  # no held-out map statistics to threshold by
        return _fallback_mask_decisions(margin, fraction, "no held-out map statistics") | residual
    by_q, normal_share = sweep
    candidates = mask_candidates(margin, fraction)
    quantile, chosen_margin, chosen_fraction = candidates[best_mask_label(by_q, candidates)]
    out = residual | {
        "mask_quantile": {
            "mask_quantile": quantile,
            "validation_iou": by_q,
            "validation_normal_share": normal_share,  # the mean share of a clean normal image flagged
            "protocol": protocol,
        }
    }
    asked = (("mask_margin", margin, chosen_margin), ("mask_peak_fraction", fraction, chosen_fraction))
    for key, how, chosen in asked:
        if how == "auto":
            out[key] = {key: chosen, "protocol": protocol}
    return out


def area_rule_decisions(
    predictor: Predictor, maps: list, masks: list, labels: np.ndarray, margin, fraction, protocol: str
) -> dict[str, dict[str, Any]]:
    """The mask threshold of MVTec AD's rule (``infer.mask_min_area`` > 0, :func:`cavga.min_area.area_rule_threshold`)
    on the clean held-out maps of the painted set (``labels`` 0), stored as the quantile of the held-out
    normal pixels it stands at, so that inference, export and reports read it as any decided quantile.
    The painted defects decide nothing here; their IoU at that threshold is stored beside, for reading."""
    clean = [m for m, y in zip(maps, labels, strict=True) if y == 0]
    threshold = area_rule_threshold(clean, predictor.mask_min_area)
    levels = predictor.normalizer.map_quantiles
    quantile = float(np.interp(threshold, levels, np.linspace(0.0, 1.0, len(levels))))
    t = predictor.threshold_at_quantile(quantile)
    pred = [peak_mask(m, t, 0.0, min_area=predictor.mask_min_area) for m in maps]
    out = {
        "mask_quantile": {
            "mask_quantile": quantile,
            "min_area_rule": {"min_area": predictor.mask_min_area, "threshold": threshold},
            "validation_iou_at_rule": round(iou(pred, masks, labels), 4),
            "protocol": f"MVTec AD's minimum-area rule on {len(clean)} held-out normals; IoU on {protocol}",
        }
    }
    for key, asked in (("mask_margin", margin), ("mask_peak_fraction", fraction)):
        if asked == "auto":  # the rule thresholds each map as it is
            out[key] = {key: 0.0, "protocol": "MVTec AD's minimum-area rule"}
    return out


FIXED_RESIDUAL_LABEL = "0.5 of the held-out peak"  # the residual's mask before session 58 (FIXED_RESIDUAL_LEVEL)


def decide_residual_mask(
    predictor: Predictor,
    residuals: list[np.ndarray],
    masks: list[np.ndarray],
    labels: np.ndarray,
    margin: float | str = 0.0,
    fraction: float | str = 0.0,
) -> dict[str, dict[str, Any]]:
    """The same-run residual baseline's mask level, decided as the map's is: of the map's candidates
    (:func:`mask_candidates` at the run's ``margin`` and ``fraction``, each quantile read off the
    clean held-out images' scaled residual pixels) and the fixed rule (FIXED_RESIDUAL_LEVEL, kept at
    ties), the one whose masks overlap the painted defects best. ``residuals``: the painted set's
    residual maps (M x (h, w), content only, clean images first, as ``labels`` 0); the paper's
    central claim compares the two maps, so both get their threshold by one protocol (session 58).
    Returns the checkpoint's "residual_mask", with the held-out peak it is of; {} without one."""
    peak = predictor.normalizer.residual_peak if predictor.normalizer is not None else 0.0
    if not peak:
        return {}
    scaled = [np.clip(r / peak, 0.0, 1.0) for r in residuals]  # as evaluate scales the test residual
    clean = np.concatenate([r.ravel() for r, y in zip(scaled, labels, strict=True) if y == 0])
    candidates = mask_candidates(margin, fraction)
    quantiles = sorted({q for q, _, _ in candidates.values()})  # 8 or 9 of them under 72 or more candidates
    at = dict(zip(quantiles, np.quantile(clean, quantiles).tolist(), strict=True))  # one sort of the pixels
    levels = {label: (level_above(at[q], f), r) for label, (q, f, r) in candidates.items()}
    by_iou = {
        label: round(iou([peak_mask(m, t, r) for m in scaled], masks, labels), 4)
        for label, (t, r) in {**levels, FIXED_RESIDUAL_LABEL: FIXED_RESIDUAL_LEVEL}.items()
    }
    best = best_mask_label({k: by_iou[k] for k in candidates}, candidates)
    chosen = FIXED_RESIDUAL_LABEL if by_iou[FIXED_RESIDUAL_LABEL] >= by_iou[best] else best
    level = FIXED_RESIDUAL_LEVEL if chosen == FIXED_RESIDUAL_LABEL else levels[chosen]
    decision = {"residual_mask": list(level), "chosen": chosen, "validation_iou": by_iou, "residual_peak": peak}
    return {"residual_mask": decision}


def best_mask_label(iou_by_label: dict[str, float], candidates: dict[str, tuple[float, float, float]]) -> str:
    """The label of ``candidates`` (:func:`mask_candidates`) with the highest painted IoU; ties go to
    the lowest margin, then the lowest peak fraction, then the quantile nearest the former default 0.99."""

    def rank(label: str) -> tuple:
        q, f, r = candidates[label]
        return iou_by_label[label], -f, -r, -abs(q - 0.99)

    return max(candidates, key=rank)


def requantile(cfg: Any, decisions: dict[str, Any]) -> None:
    """An auto mask quantile at inference, with ``infer.mask_margin`` or ``mask_peak_fraction`` set by
    hand where training decided them with it (both auto): the quantile the stored painted sweep
    ranks best at those values (:func:`best_mask_label`), not the one chosen with the decided values,
    which suits them only (quantile 0.9 with r = 0.5 would flag a tenth of a normal image at r = 0).
    Values the sweep did not weigh (a fraction off ``MASK_PEAK_FRACTIONS``) keep the decided quantile."""
    sweep = (decisions.get("mask_quantile") or {}).get("validation_iou")
    asked = {key: getattr(cfg.infer, key) for key in ("mask_margin", "mask_peak_fraction")}
    by_hand = [key for key, v in asked.items() if v != "auto" and key in decisions]
    if cfg.infer.mask_quantile != "auto" or not sweep or not by_hand:
        return
    margin, fraction = (v if v != "auto" else decisions.get(key, {}).get(key, AUTO_SETTINGS[key])
                        for key, v in asked.items())  # fmt: skip
    candidates = {k: v for k, v in mask_candidates(margin, fraction).items() if k in sweep}
    if candidates:
        cfg.infer.mask_quantile = candidates[best_mask_label(sweep, candidates)][0]


def _fallback_mask_decisions(margin: float | str, fraction: float | str, why: str) -> dict[str, dict[str, Any]]:
    """The mask decisions where nothing could be measured: the AUTO_SETTINGS values."""
    out = {"mask_quantile": {"mask_quantile": AUTO_SETTINGS["mask_quantile"], "protocol": why}}
    for key, asked in (("mask_margin", margin), ("mask_peak_fraction", fraction)):
        if asked == "auto":
            out[key] = {key: AUTO_SETTINGS[key], "protocol": why}
    return out


def decide_held_out_mask_quantile(
    predictor: Predictor, records: list[D.Record], margin: float | str = 0.0, fraction: float | str = 0.0
) -> dict[str, dict[str, Any]]:
    """:func:`decide_mask_quantile` on the normal images among a run's held-out ``records``, for the
    checkpoint at the end of training (CAVGA's and the baselines'), ``infer.mask_copies`` painted copies
    each, faded by ``infer.mask_fade`` (its ``auto`` resolved: :func:`cavga.config.resolve.mask_fade`)."""
    held_out = [r for r in records if r.label == 0]
    if not held_out:
        return _fallback_mask_decisions(margin, fraction, "no held-out normals")
    cfg = predictor.cfg
    images, boxes = held_out_images(held_out, cfg.data.image_size, cfg.data.resize)  # (N, 3, S, S)
    copies, fade = cfg.infer.mask_copies, mask_fade(cfg)
    return decide_mask_quantile(predictor, images, boxes, copies=copies, margin=margin, fraction=fraction, fade=fade)


def mask_sweep(
    predictor: Predictor,
    maps: list,
    masks: list,
    labels: np.ndarray,
    margin: float | str = 0.0,
    fraction: float | str = 0.0,
) -> tuple[dict[str, float], dict[str, float]] | None:
    """For each of :func:`mask_candidates` (how much of the map a mask should keep, chosen on painted
    defects; the threshold-free metrics do not depend on it, only the masks do): the IoU of its
    masks with the painted defects (``labels`` 1), and the mean share of a clean image's pixels
    (``labels`` 0) it flags; None without held-out map statistics."""
    if predictor.normalizer is None or not predictor.normalizer.map_quantiles:
        return None
    clean = np.asarray(labels) == 0  # (M,)
    by_iou, by_share = {}, {}
    for label, (q, f, r) in mask_candidates(margin, fraction).items():
        t = predictor.threshold_at_quantile(q, f)
        pred = [peak_mask(m, t, r) for m in maps]  # each map's mask, once for both numbers
        by_iou[label] = round(iou(pred, masks, labels), 4)
        by_share[label] = (
            float(np.mean([p.mean() for p, c in zip(pred, clean, strict=True) if c])) if clean.any() else 0.0
        )
    return by_iou, by_share
