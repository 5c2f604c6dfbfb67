"""Validation without real anomalies: synthetic defects painted on held-out normal images.

Settings (loss weights, attention layer and score, image size, epochs, mask quantile) are chosen
on this protocol, never on a test split and never with real anomalies (training's own ``auto``
decisions on it: :mod:`cavga.painted_decisions`).  ``validate_run`` takes the normal
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

from .config import RunConfig, load_config, to_dict
from .config.resolve import mask_fade
from .data import why_none_held_out
from .demo_data import DEFECT_TYPES
from .errors import CavgaError
from .evaluate import GATE_KEYS, METRIC_KEYS, residual_baseline
from .inference import Predictor
from .io_utils import atomic_write_json, check_output_folder
from .map_choice import map_settings
from .mask_threshold import mask_sweep
from .metrics import compute_metrics, image_auroc, pixel_auroc
from .painting import (
    content_only,
    held_out_images,
    held_out_normals,
    predict_painted,
    protocol_text,
)
from .runfolder import VALIDATION_FILE, RunData, saved_run
from .runlock import RunLock


def validate_run(
    run_dir: str | Path, device: str = "auto", seed: int = 0, copies: int = 2, infer: list[str] | None = None
) -> dict[str, Any]:
    """Score the run's held-out normals, clean and with painted defects; write ``validation.json``.
    The run's lock is held throughout, as evaluate holds it (:mod:`cavga.runlock`)."""
    run_dir = Path(run_dir)
    if copies < 1:
        raise CavgaError(f"--copies {copies}: give 1 or more painted copies of each held-out image")
    if seed < 0:  # numpy's generators take none
        raise CavgaError(f"--paint-seed {seed}: give a seed of 0 or more")
    check_output_folder(run_dir, "run folder")  # validation.json goes there: a read-only run is said now
    with RunLock(run_dir, "validate", create=False):  # not while a training or an evaluation writes the run
        return _validate_locked(run_dir, device, seed, copies, infer)


def _validate_locked(run_dir: Path, device: str, seed: int, copies: int, infer: list[str] | None) -> dict[str, Any]:
    """:func:`validate_run` once the run is locked."""
    # first: an unfinished run is said as evaluate says it, before anything that needs its statistics;
    # the sweep's infer.mask_fade is read here, so it is no decision-only setting to warn of
    predictor = Predictor.from_run(run_dir, device, infer, acting=("mask_fade",))
    cfg = predictor.cfg
    held_out = held_out_normals(run_dir)
    if not held_out:
        why = no_held_out_reason(run_dir, cfg)
        raise CavgaError(f"{run_dir}: the run held out no normal images to validate on: {why}")
    images, given = held_out_images(held_out, cfg.data.image_size, cfg.data.resize)  # (N, 3, S, S), N boxes
    cols, masks, labels, kinds, boxes = predict_painted(predictor, images, given, seed, copies)  # M images
    maps, masks = content_only(cols["map"], boxes), content_only(masks, boxes)  # M x (h_i, w_i)
    pred_masks, res = content_only(cols["pmask"], boxes), content_only(cols["res"], boxes)
    recon = cols["res_score"]  # (M,) the residual's raw image score: its unblurred mean over the content
    peak = predictor.normalizer.residual_peak if predictor.normalizer else max(float(r.max()) for r in res)
    res = [r / max(peak, 1e-12) for r in res]  # scaled as evaluate scales it (unclipped: residual_baseline)
    raw = cols["raw"]
    metrics = compute_metrics(raw, labels, cols["pred"], maps, masks, pred_masks)
    baseline = residual_baseline(predictor, recon, labels, res, masks, None, *predictor.residual_level)
    by_map, by_residual = (pixel_auroc_by_kind(m, masks, kinds, labels) for m in (maps, res))
    per_defect = {k: {"pixel_auroc": by_map[k], "residual_pixel_auroc": by_residual[k]} for k in by_map}
    fade = mask_fade(cfg)
    swept = (maps, masks, labels)
    if fade < 1.0:  # the mask threshold is decided on faded paint (infer.mask_fade): its sweep is too
        faded, f_masks, labels_f, _, f_boxes = predict_painted(predictor, images, given, seed, copies, fade)
        swept = (content_only(faded["map"], f_boxes), content_only(f_masks, f_boxes), labels_f)
    # the margin and peak fraction as asked (the checkpoint's, with --set; "auto" where training decided them)
    asked = predictor.requested_infer or to_dict(cfg)["infer"]
    sweep = mask_sweep(predictor, *swept, asked["mask_margin"], asked["mask_peak_fraction"])
    result = {
        "run": str(run_dir),
        "model": cfg.model.label,
        "protocol": f"held-out normals ({len(held_out)}) + {copies} painted copies each, seed {seed}",
        "n_held_out": len(held_out),
        "image_size": cfg.data.image_size,
        **map_settings(cfg),  # the map and image score in use
        "metrics": {k: metrics[k] for k in (*METRIC_KEYS, *GATE_KEYS)},
        "baseline_residual": {k: baseline[k] for k in METRIC_KEYS} if predictor.has_reconstruction else None,
        "residual_mask": list(predictor.residual_level),  # its (threshold, peak fraction), as training's end decided
        "per_defect": per_defect,
        "mask_quantile": cfg.infer.mask_quantile,  # in use: as decided by training when "auto"; None: the fixed one
        "mask_threshold": predictor.mask_threshold,  # the map's threshold in use, before the peak fraction
        "mask_margin": cfg.infer.mask_margin,
        "mask_peak_fraction": predictor.mask_peak_fraction,
        "mask_min_area": predictor.mask_min_area,
        # the thresholds an auto mask quantile weighs, at the run's mask margin and peak fraction as asked:
        # their painted IoU, and the share of a clean held-out image each flags
        "mask_fade": fade,  # the sweep's painted set: faded as the mask decision's (infer.mask_fade)
        "mask_sweep_protocol": protocol_text(len(held_out), copies, seed, fade),
        "mask_quantile_iou": sweep[0] if sweep else None,
        "mask_normal_share": sweep[1] if sweep else None,
        "image_auroc_by_score": _image_auroc_by_score(cfg, raw, recon, cols["bce"], maps, labels),
    }
    atomic_write_json(run_dir / VALIDATION_FILE, result)
    return result


def pixel_auroc_by_kind(maps: list, masks: list, kinds: list[str], labels: np.ndarray) -> dict[str, float]:
    """Each painted defect type's pixel AUROC against the clean images (the painted set's ``kinds``
    and ``labels``), to four decimals; types the set does not hold are left out."""
    kinds = np.asarray(kinds)
    out = {}
    for k in DEFECT_TYPES:
        if (kinds == k).any():
            sel = np.flatnonzero((kinds == k) | (labels == 0))  # this defect type against the clean images
            out[k] = round(pixel_auroc([maps[j] for j in sel], [masks[j] for j in sel]), 4)
    return out


def _image_auroc_by_score(
    cfg, raw: np.ndarray, recon: np.ndarray, bce: np.ndarray, maps: list, labels: np.ndarray
) -> dict:
    """Validation image AUROC of each ``infer.image_score``, to choose it by: "paper" (CAVGA-u's
    reconstruction score; CAVGA-w's C, known only when it is the run's setting), "map" (the peak)
    and, for the CAVGA variants, "bce" (the reconstruction BCE)."""
    paper = raw if cfg.infer.image_score == "paper" else (None if cfg.model.weakly_supervised else recon)
    peaks = np.array([m.max() for m in maps])
    return {
        "paper": None if paper is None else round(image_auroc(paper, labels), 4),
        "map": round(image_auroc(peaks, labels), 4),
        "bce": None if cfg.model.is_baseline else round(image_auroc(bce, labels), 4),
    }


def no_held_out_reason(run_dir: str | Path, cfg: RunConfig | None = None) -> str:
    """:func:`why_none_held_out` for a run folder: its split.json and the data.val_fraction it was
    trained with (``cfg``'s, else its config.yaml's, else its checkpoint's)."""
    run_dir = Path(run_dir)
    n_normal = sum(r.label == 0 for r in RunData.load(run_dir).train)
    config_file = run_dir / "config.yaml"
    if cfg is None:
        cfg = load_config(config_file, saved=True) if config_file.is_file() else saved_run(run_dir)[1]
    return why_none_held_out(n_normal, cfg.data.val_fraction)
