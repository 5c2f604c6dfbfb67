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
from .config import load_config
from .demo_data import DEFECT_TYPES, paint_defect, texture
from .errors import CavgaError
from .evaluate import METRIC_KEYS, residual_baseline
from .image_scores import bce_score, reconstruction_score
from .inference import AUTO_SETTINGS, Predictor, anomaly_evidence, map_settings
from .io_utils import atomic_write_json
from .metrics import compute_metrics, image_auroc, iou, pixel_auroc
from .networks import CAVGA
from .runfolder import VALIDATION_FILE, RunData

# infer.mask_quantile values whose validation IoU `cavga validate` reports, and "auto" chooses from
# (the top two after bottle's CAVGA-Ru runs chose 0.999, the highest, with the IoU still rising)
MASK_QUANTILES = (0.9, 0.95, 0.98, 0.99, 0.995, 0.999, 0.9995, 0.9999)
# infer.mask_margin values "auto" weighs at quantile 1.0 (the highest held-out normal pixel): the
# masks of thresholds above every normal pixel, where the painted IoU of 0.9999 was still rising
MASK_MARGINS = (0.0, 0.025, 0.05, 0.1, 0.2)
FOREIGN_TEXTURE = "gravel"  # the source of the "patch" defect's foreign texture


def paint_validation_set(
    images: torch.Tensor, seed: int = 0, copies: int = 2, boxes: list[D.geometry.Box] | None = None
) -> tuple[torch.Tensor, np.ndarray, np.ndarray, list[str]]:
    """Clean ``images`` (N, 3, S, S) in [0, 1] plus ``copies`` painted versions of each.

    ``boxes`` (one per image, ``data.resize``: pad or center) keep each defect on the image's content: it is
    painted in the largest centred square of the box. Returns (images (M, 3, S, S), masks (M, S, S)
    bool, labels (M,), defect types), M = N * (1 + copies); defect types cycle through DEFECT_TYPES."""
    rng = np.random.default_rng(seed)
    other = texture(FOREIGN_TEXTURE)
    n, _, s, _ = images.shape
    out, masks, kinds = [images], [np.zeros((n, s, s), dtype=bool)], ["good"] * n
    for c in range(copies):
        for i in range(n):
            kind = DEFECT_TYPES[(c * n + i) % len(DEFECT_TYPES)]
            top, left, h, w = boxes[i] if boxes else (0, 0, s, s)
            q = min(h, w)  # the painters take a square
            top, left = top + (h - q) // 2, left + (w - q) // 2
            img = images[i].permute(1, 2, 0).numpy() * 255.0  # (S, S, 3)
            img = np.ascontiguousarray(img, dtype=np.float32)
            square = np.ascontiguousarray(img[top : top + q, left : left + q])  # (q, q, 3)
            mask = np.zeros((1, s, s), dtype=bool)
            mask[0, top : top + q, left : left + q] = paint_defect(kind, square, rng, other)
            img[top : top + q, left : left + q] = square
            masks.append(mask)  # (1, S, S)
            out.append(torch.from_numpy(np.clip(img, 0, 255) / 255.0).permute(2, 0, 1)[None].float())
            kinds.append(kind)
    labels = np.array([0] * n + [1] * (n * copies))
    return torch.cat(out), np.concatenate(masks), labels, kinds


def held_out_images(
    records: list[D.Record], size: int, resize: str = "stretch"
) -> tuple[torch.Tensor, list[D.geometry.Box]]:
    """The normal images among ``records`` (a run's held-out split), (N, 3, S, S) in [0, 1], placed
    by ``resize``, and each one's content box in the square."""
    loaded = [D.read_image(r.image_path, size, resize) for r in records if r.label == 0]
    return torch.stack([x for x, _ in loaded]), [D.content_box(hw, size, resize) for _, hw in loaded]


def _painted(images: torch.Tensor, boxes: list[D.geometry.Box] | None, seed: int, copies: int):
    """:func:`paint_validation_set`, plus the content box of each of its M = N * (1 + copies) images
    and, where any of them is padded, their content maps (M, 1, S, S) (else None)."""
    x, masks, labels, kinds = paint_validation_set(images, seed, copies, boxes)
    s = x.shape[-1]
    boxes = (list(boxes) if boxes else [(0, 0, s, s)] * len(images)) * (1 + copies)
    padded = any(b != (0, 0, s, s) for b in boxes)
    valid = torch.stack([D.geometry.box_mask(b, s) for b in boxes]) if padded else None  # (M, 1, S, S)
    return x, masks, labels, kinds, boxes, valid


def _at_size(amap: torch.Tensor, size: int) -> np.ndarray:
    """Maps (B, 1, h, w) upsampled to the model's resolution, (B, S, S) in [0, 1]."""
    return upsample(amap, size).squeeze(1).clamp(0, 1).cpu().numpy()


def _content(maps: np.ndarray, boxes: list[D.geometry.Box]) -> list[np.ndarray]:
    """Each (S, S) map cropped to its image's content box: the padding is never scored."""
    return [D.crop(m, b) for m, b in zip(maps, boxes, strict=True)]


def decide_on_painted(
    model: CAVGA,
    images: torch.Tensor,
    batch_size: int,
    device: torch.device,
    direction: str = "auto",
    image_score: str = "auto",
    weak_map: str = "auto",
    boxes: list[D.geometry.Box] | None = None,
    seed: int = 0,
    copies: int = 2,
    shifted: bool | str = "auto",
) -> dict[str, dict[str, Any] | None]:
    """The ``auto`` inference settings of a trained model, decided on painted defects on held-out
    normals ``images`` (N, 3, S, S) (with their content ``boxes`` when padded); None where a setting
    was not ``auto`` (or does not apply).

    * ``infer.attention_direction`` (CAVGA-u): the paper's 1 - A is kept unless A (unclamped above
      the normal peak) has the higher pixel AUROC on the painted set, i.e. unless the attention
      *rises* on defects; then A is used.
    * ``infer.weak_map`` (CAVGA-w): the paper's A_ca is kept unless 1 - A_cn has the higher pixel
      AUROC on the painted set; then "normal".
    * ``infer.image_score``: the paper's score (CAVGA-u's reconstruction difference, CAVGA-w's C) is
      kept unless the chosen map's peak ("map") or the reconstruction BCE above its floor ("bce")
      ranks the painted images above the clean ones better (image AUROC); then the better of those.
    * ``infer.shifted_map``: the chosen map is averaged over half-cell shifts of the image where that
      has the higher pixel AUROC on the painted set (decided before the image score, whose "map" is
      the peak of the map so chosen)."""
    args = (model, images, batch_size, device, direction, image_score, weak_map, boxes, seed, copies, shifted)
    return _painted_decisions(*args)[0]


def painted_pixel_auroc(model: CAVGA, images: torch.Tensor, boxes: list[D.geometry.Box] | None, cfg, device) -> float:
    """The pixel AUROC on painted held-out normals ``images`` of the map ``cfg`` asks for, its ``auto``
    settings decided as :func:`decide_on_painted` decides them: the number ``cavga validate`` reports
    (``train.validate_every`` chooses the epoch by it)."""
    direction = cfg.infer.attention_direction if cfg.model.has_attention_direction else "fixed"
    weak_map = cfg.infer.weak_map if cfg.model.weakly_supervised else "fixed"
    args = (model, images, cfg.infer.batch_size, device, direction, "fixed", weak_map, boxes)
    _, maps, masks = _painted_decisions(*args, shifted=cfg.infer.shifted_map)
    return pixel_auroc(maps, masks)


def _painted_decisions(
    model, images, batch_size, device, direction, image_score, weak_map, boxes, seed=0, copies=2, shifted="auto"
) -> tuple[dict[str, dict[str, Any] | None], list[np.ndarray], list[np.ndarray]]:
    """:func:`decide_on_painted`'s decisions, and the painted set's maps as decided and masks (content only)."""
    x, masks, labels, _, boxes, valid = _painted(images, boxes, seed, copies)
    s = x.shape[-1]
    both_weak = model.cfg.weakly_supervised and weak_map == "auto"  # score A_ca and 1 - A_cn
    first = "normal" if weak_map == "normal" else "anomalous"
    maps, normal_maps, paper, bce = [], [], [], []
    for i in range(0, len(x), batch_size):
        xb = x[i : i + batch_size].to(device)  # (B, 3, S, S)
        vb = None if valid is None else valid[i : i + batch_size].to(device)  # (B, 1, S, S)
        amap, x_hat, p_anomalous = anomaly_evidence(model, xb, "inverse", first, shifted is True)  # (B, 1, h, w)
        maps.append(_at_size(amap, s))  # (B, S, S)
        if both_weak:
            normal_maps.append(_at_size(anomaly_evidence(model, xb, "inverse", "normal", shifted is True)[0], s))
        if image_score == "auto":  # the paper's score: C's probability (w), the reconstruction score (u)
            score = p_anomalous if p_anomalous is not None else reconstruction_score(xb, x_hat, vb)[1]  # (B,)
            paper.append(score.cpu().numpy())
            bce.append(bce_score(xb, x_hat, vb).cpu().numpy())  # (B,)
    maps, masks = _content(np.concatenate(maps), boxes), _content(masks, boxes)
    protocol = _protocol(len(images), copies, seed)
    out: dict[str, dict[str, Any] | None] = {
        "attention_direction": None,
        "image_score": None,
        "weak_map": None,
        "shifted_map": None,
    }
    if both_weak:
        normal_maps = _content(np.concatenate(normal_maps), boxes)
        by_map = {"anomalous": round(pixel_auroc(maps, masks), 4), "normal": round(pixel_auroc(normal_maps, masks), 4)}
        chosen = "normal" if by_map["normal"] > by_map["anomalous"] else "anomalous"
        out["weak_map"] = {"weak_map": chosen, "validation_pixel_auroc": by_map, "protocol": protocol}
        maps = normal_maps if chosen == "normal" else maps
    if model.cfg.has_attention_direction and direction in ("auto", "direct"):
        direct = [  # A's own map, unclamped above the normal peak (anomaly_evidence)
            _at_size(anomaly_evidence(model, x[i : i + batch_size].to(device), "direct", shifted=shifted is True)[0], s)
            for i in range(0, len(x), batch_size)
        ]
        direct = _content(np.concatenate(direct), boxes)
        if direction == "auto":
            by_map = {"inverse": round(pixel_auroc(maps, masks), 4), "direct": round(pixel_auroc(direct, masks), 4)}
            direction = "direct" if by_map["direct"] > by_map["inverse"] else "inverse"
            out["attention_direction"] = {
                "attention_direction": direction,
                "validation_pixel_auroc": by_map[direction],
                "validation_pixel_auroc_by_direction": by_map,
                "protocol": protocol,
            }
        maps = direct if direction == "direct" else maps
    if shifted == "auto":
        chosen_weak = out["weak_map"]["weak_map"] if out["weak_map"] else first
        chosen_direction = "direct" if direction == "direct" else "inverse"
        moved = [  # the chosen map averaged over half-cell shifts (cavga.attention.half_cell_average)
            _at_size(
                anomaly_evidence(model, x[i : i + batch_size].to(device), chosen_direction, chosen_weak, True)[0], s
            )
            for i in range(0, len(x), batch_size)
        ]
        moved = _content(np.concatenate(moved), boxes)
        by_shift = {"off": round(pixel_auroc(maps, masks), 4), "on": round(pixel_auroc(moved, masks), 4)}
        out["shifted_map"] = {
            "shifted_map": by_shift["on"] > by_shift["off"],
            "validation_pixel_auroc_by_shift": by_shift,
            "protocol": protocol,
        }
        maps = moved if by_shift["on"] > by_shift["off"] else maps
    if image_score == "auto":
        by_score = {
            "paper": round(image_auroc(np.concatenate(paper), labels), 4),
            "map": round(image_auroc(np.array([m.max() for m in maps]), labels), 4),
            "bce": round(image_auroc(np.concatenate(bce), labels), 4),
        }
        out["image_score"] = {
            "image_score": max(by_score, key=by_score.get),  # the first of the best: ties keep the paper's
            "validation_image_auroc": by_score,
            "protocol": protocol,
        }
    return out, maps, masks


def validate_run(
    run_dir: str | Path, device: str = "auto", seed: int = 0, copies: int = 2, infer: list[str] | None = None
) -> dict[str, Any]:
    """Score the run's held-out normals, clean and with painted defects; write ``validation.json``."""
    run_dir = Path(run_dir)
    held_out = held_out_normals(run_dir)
    if not held_out:
        raise CavgaError(f"{run_dir}: the run held out no normal images to validate on (data.val_fraction is 0)")
    predictor = Predictor.from_run(run_dir, device, infer)
    cfg = predictor.cfg
    images, boxes = held_out_images(held_out, cfg.data.image_size, cfg.data.resize)  # (N, 3, S, S), N boxes
    cols, masks, labels, kinds, boxes = _predict_painted(predictor, images, boxes, seed, copies)  # M images
    maps, masks = _content(cols["map"], boxes), _content(masks, boxes)  # M x (h_i, w_i)
    pred_masks, res = _content(cols["pmask"], boxes), _content(cols["res"], boxes)
    recon = np.array([r.mean() for r in res])  # (M,) the residual's raw image score
    peak = predictor.normalizer.residual_peak if predictor.normalizer else max(float(r.max()) for r in res)
    res = [np.clip(r / max(peak, 1e-12), 0.0, 1.0) for r in res]  # scaled as evaluate scales it
    raw = cols["raw"]
    metrics = compute_metrics(raw, labels, cols["pred"], maps, masks, pred_masks)
    baseline = residual_baseline(predictor, recon, labels, res, masks)
    kinds_arr = np.asarray(kinds)
    per_defect = {}
    for k in DEFECT_TYPES:
        sel = np.flatnonzero((kinds_arr == k) | (labels == 0))  # this defect type against the clean images
        if (kinds_arr == k).any():
            per_defect[k] = {
                "pixel_auroc": round(pixel_auroc([maps[j] for j in sel], [masks[j] for j in sel]), 4),
                "residual_pixel_auroc": round(pixel_auroc([res[j] for j in sel], [masks[j] for j in sel]), 4),
            }
    result = {
        "run": str(run_dir),
        "model": cfg.model.label,
        "protocol": f"held-out normals ({len(held_out)}) + {copies} painted copies each, seed {seed}",
        "n_held_out": len(held_out),
        "image_size": cfg.data.image_size,
        **map_settings(cfg),  # the map and image score in use
        "metrics": {k: metrics[k] for k in METRIC_KEYS},
        "baseline_residual": {k: baseline[k] for k in METRIC_KEYS} if predictor.has_reconstruction else None,
        "per_defect": per_defect,
        "mask_quantile": cfg.infer.mask_quantile,  # in use: as decided by training when "auto"
        "mask_margin": cfg.infer.mask_margin,
        # the thresholds an auto mask quantile weighs, at the run's mask margin as it was asked
        "mask_quantile_iou": _mask_quantile_iou(predictor, maps, masks, labels, _asked_margin(run_dir, cfg)),
        "image_auroc_by_score": _image_auroc_by_score(cfg, raw, recon, cols["bce"], maps, labels),
    }
    atomic_write_json(run_dir / VALIDATION_FILE, result)
    return result


def _asked_margin(run_dir: Path, cfg) -> float | str:
    """``infer.mask_margin`` as the run's config.yaml asks it ("auto" or a number), before training decided it."""
    config_file = run_dir / "config.yaml"
    return load_config(config_file, saved=True).infer.mask_margin if config_file.is_file() else cfg.infer.mask_margin


def held_out_normals(run_dir: str | Path) -> list[D.Record]:
    """The normal images a run held out from training (``split.json``'s ``val``)."""
    return [r for r in RunData.load(run_dir).val if r.label == 0]


def _predict_painted(
    predictor: Predictor, images: torch.Tensor, boxes: list[D.geometry.Box] | None, seed: int, copies: int
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, list[str], list[D.geometry.Box]]:
    """``predictor``'s answers for the held-out ``images`` (N, 3, S, S), clean and painted: the
    columns raw score, verdict, map, mask, residual map and reconstruction BCE (M images each), then
    the painted set's masks (M, S, S), labels (M,), defect kinds and content boxes."""
    x, masks, labels, kinds, boxes, valid = _painted(images, boxes, seed, copies)  # M images, M boxes
    cols: dict[str, list] = {k: [] for k in ("raw", "pred", "map", "pmask", "res", "bce")}
    b = predictor.cfg.infer.batch_size
    for i in range(0, len(x), b):
        vb = None if valid is None else valid[i : i + b]  # (b, 1, S, S)
        pred = predictor.predict_batch(x[i : i + b], vb)
        cols["bce"].append(bce_score(x[i : i + b], pred.reconstruction, vb).numpy())
        cols["raw"].append(pred.raw_score.numpy())
        cols["pred"].append(pred.label.numpy())
        cols["map"].append(pred.anomaly_map.numpy())
        cols["pmask"].append(pred.mask.numpy())
        cols["res"].append(pred.residual_map.numpy())
    return {k: np.concatenate(v) for k, v in cols.items()}, masks, labels, kinds, boxes


def mask_candidates(margin: float | str = "auto") -> dict[str, tuple[float, float]]:
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
    margin: float | str = "auto",
) -> dict[str, dict[str, Any]]:
    """``infer.mask_quantile: auto``: of :func:`mask_candidates`, the threshold whose masks overlap
    the painted defects on the held-out normals ``images`` best (mean IoU, as ``cavga validate``
    prints it for each; ties go to the lowest margin, then the quantile nearest the former default
    0.99). ``predictor`` holds the run's other settings as decided and its held-out map statistics.
    ``margin`` is ``infer.mask_margin`` as the run asked it. Returns the checkpoint's decisions:
    "mask_quantile", and "mask_margin" where that is auto too."""
    cols, masks, labels, _, boxes = _predict_painted(predictor, images, boxes, seed, copies)
    by_q = _mask_quantile_iou(predictor, _content(cols["map"], boxes), _content(masks, boxes), labels, margin)
    if by_q is None:  # no held-out map statistics to threshold by
        return _fallback_mask_decisions(margin, "no held-out map statistics")
    candidates = mask_candidates(margin)
    best = max(candidates, key=lambda k: (by_q[k], -candidates[k][1], -abs(candidates[k][0] - 0.99)))
    quantile, chosen_margin = candidates[best]
    protocol = _protocol(len(images), copies, seed)
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
    predictor: Predictor, records: list[D.Record], margin: float | str = "auto"
) -> dict[str, dict[str, Any]]:
    """:func:`decide_mask_quantile` on the normal images among a run's held-out ``records``, for the
    checkpoint at the end of training (CAVGA's and the baselines')."""
    held_out = [r for r in records if r.label == 0]
    if not held_out:
        return _fallback_mask_decisions(margin, "no held-out normals")
    cfg = predictor.cfg
    images, boxes = held_out_images(held_out, cfg.data.image_size, cfg.data.resize)  # (N, 3, S, S)
    return decide_mask_quantile(predictor, images, boxes, margin=margin)


def _protocol(n: int, copies: int, seed: int) -> str:
    return f"{n} held-out normals + {copies} painted copies each, seed {seed}"


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


def _mask_quantile_iou(
    predictor: Predictor, maps: list, masks: list, labels: np.ndarray, margin: float | str = "auto"
) -> dict | None:
    """Validation IoU for each of :func:`mask_candidates`: how much of the map a mask should keep,
    chosen on painted defects. The threshold-free metrics above do not depend on it; only the masks do."""
    if predictor.normalizer is None or not predictor.normalizer.map_quantiles:
        return None
    return {
        label: round(iou([m >= predictor.threshold_at_quantile(q, f) for m in maps], masks, labels), 4)
        for label, (q, f) in mask_candidates(margin).items()
    }


# Below this validation AUROC `cavga train` warns. Chosen from the stored runs measured both ways
# (benchmarks/validation_vs_test.py; docs/method.md, "How far painted defects predict real ones"):
# the 18 CAVGA runs whose map scored under 0.7 here reached test pixel AUROC 0.25-0.78 (median 0.59).
WEAK_AUROC = 0.7
FEW_HELD_OUT = 10  # fewer held-out normals than this: the check's numbers swing with a single image


def painted_check(run_dir: str | Path, device: str = "auto") -> dict[str, Any] | None:
    """What ``cavga train`` ends with: :func:`validate_run` on a trained run (writing
    validation.json), or None when the run held out no normal images to paint on."""
    return validate_run(run_dir, device) if held_out_normals(run_dir) else None


def check_summary(result: dict[str, Any]) -> str:
    """One line of :func:`validate_run`'s ``result``: what a user learns about the trained run
    without a single real anomaly."""
    m = result["metrics"]
    line = (
        f"painted-defect check ({result['protocol']}; no test image): pixel AUROC {m['pixel_auroc']:.3f}, "
        f"image AUROC {m['image_auroc']:.3f}, IoU {m['iou']:.3f}"
    )
    if result.get("baseline_residual"):
        line += f" (the reconstruction residual's pixel AUROC: {result['baseline_residual']['pixel_auroc']:.3f})"
    return line


def check_warnings(result: dict[str, Any]) -> list[str]:
    """Plain warnings where :func:`validate_run`'s ``result`` says the map or the verdict is not to
    be trusted: an AUROC under ``WEAK_AUROC`` on painted defects (0.5 is chance), or fewer than
    ``FEW_HELD_OUT`` held-out normals behind the numbers."""
    m, out = result["metrics"], []
    if m["pixel_auroc"] < WEAK_AUROC:
        out.append(
            f"{result['run']}: the anomaly map barely finds painted defects on held-out normals (pixel AUROC "
            f"{m['pixel_auroc']:.3f} < {WEAK_AUROC}; 0.5 is chance), so its heatmaps and masks are unlikely to "
            "outline real defects; in this project's measurements pretrained features localised best (CAVGA-R with "
            "a frozen pretrained encoder: README, 'CAVGA-R's encoder'; the PatchCore-like reference: docs/baselines.md)"
        )
    if m["image_auroc"] < WEAK_AUROC:
        out.append(
            f"{result['run']}: the image score barely separates painted-defect images from clean ones (image "
            f"AUROC {m['image_auroc']:.3f} < {WEAK_AUROC}), so its verdicts are unlikely to be reliable"
        )
    n = result.get("n_held_out")
    if n is not None and n < FEW_HELD_OUT:
        out.append(
            f"{result['run']}: the painted-defect check and the verdict threshold rest on only {n} held-out normal "
            f"images; with more images (or a larger data.val_fraction) both would be steadier"
        )
    return out
