"""The painted validation set: held-out normal images, clean and with synthetic defects.

The demo's painters (scratch, hole, stain, foreign patch) paint one defect on each copy of a
held-out normal image at the model's resolution, with its exact mask (:mod:`cavga.validation`
chooses settings on it; :mod:`cavga.mask_threshold` the mask threshold).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from . import data as D
from .attention import image_map
from .demo_data import DEFECT_TYPES, paint_defect, texture
from .image_scores import bce_score, peak_mask
from .inference import Predictor
from .normal_level import held_out_levels
from .runfolder import RunData

FOREIGN_TEXTURE = "gravel"  # the source of the "patch" defect's foreign texture


def paint_validation_set(
    images: torch.Tensor,
    seed: int = 0,
    copies: int = 2,
    boxes: list[D.geometry.Box] | None = None,
    fade: float = 1.0,
) -> tuple[torch.Tensor, np.ndarray, np.ndarray, list[str]]:
    """Clean ``images`` (N, 3, S, S) in [0, 1] plus ``copies`` painted versions of each.

    ``boxes`` (one per image, ``data.resize``: pad or center) keep each defect on the image's content: it is
    painted in the largest centred square of the box. Returns (images (M, 3, S, S), masks (M, S, S)
    bool, labels (M,), defect types), M = N * (1 + copies); defect types cycle through DEFECT_TYPES.
    ``fade`` < 1 blends each painted image with its clean one, x + a (painted - x), at a strength a
    drawn from U(fade, 1) per image (its own generator, so the defects are the same as unfaded);
    the mask stays the defect's full extent (``infer.mask_fade``)."""
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
    x = torch.cat(out)  # (M, 3, S, S)
    if fade < 1.0:
        clean = images.repeat(1 + copies, 1, 1, 1)  # (M, 3, S, S), in x's order
        a = torch.from_numpy(np.random.default_rng(seed + 1000).uniform(fade, 1.0, len(x))).float()  # (M,)
        x = clean + a[:, None, None, None] * (x - clean)  # the clean copies: x - clean = 0
    return x, np.concatenate(masks), labels, kinds


def held_out_images(
    records: list[D.Record], size: int, resize: str = "stretch"
) -> tuple[torch.Tensor, list[D.geometry.Box]]:
    """The normal images among ``records`` (a run's held-out split), (N, 3, S, S) in [0, 1], placed
    by ``resize``, and each one's content box in the square."""
    loaded = [D.read_image(r.image_path, size, resize) for r in records if r.label == 0]
    return torch.stack([x for x, _ in loaded]), [D.content_box(hw, size, resize) for _, hw in loaded]


def painted_set(images: torch.Tensor, boxes: list[D.geometry.Box] | None, seed: int, copies: int, fade: float = 1.0):
    """:func:`paint_validation_set`, plus the content box of each of its M = N * (1 + copies) images
    and, where any of them is padded, their content maps (M, 1, S, S) (else None)."""
    x, masks, labels, kinds = paint_validation_set(images, seed, copies, boxes, fade)
    s = x.shape[-1]
    boxes = (list(boxes) if boxes else [(0, 0, s, s)] * len(images)) * (1 + copies)
    padded = any(b != (0, 0, s, s) for b in boxes)
    valid = torch.stack([D.geometry.box_mask(b, s) for b in boxes]) if padded else None  # (M, 1, S, S)
    return x, masks, labels, kinds, boxes, valid


def at_size(amap: torch.Tensor, size: int, blur: float = 0.0, valid: torch.Tensor | None = None) -> np.ndarray:
    """Maps (B, 1, h, w) as read at the model's resolution (:func:`cavga.attention.image_map`), (B, S, S) in [0, 1],
    blurred within each image's content ``valid`` (B, 1, S, S) where padded, as the maps a run answers with."""
    return image_map(amap, size, blur, None if valid is None else valid.to(amap.device)).cpu().numpy()


def content_only(maps: np.ndarray, boxes: list[D.geometry.Box]) -> list[np.ndarray]:
    """Each (S, S) map cropped to its image's content box: the padding is never scored."""
    return [D.crop(m, b) for m, b in zip(maps, boxes, strict=True)]


def held_out_normals(run_dir: str | Path) -> list[D.Record]:
    """The normal images a run held out from training (``split.json``'s ``val``)."""
    return [r for r in RunData.load(run_dir).val if r.label == 0]


def predict_painted(
    predictor: Predictor,
    images: torch.Tensor,
    boxes: list[D.geometry.Box] | None,
    seed: int,
    copies: int,
    fade: float = 1.0,
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, list[str], list[D.geometry.Box]]:
    """``predictor``'s answers for the held-out ``images`` (N, 3, S, S), clean and painted: the
    columns raw score, verdict, map, mask (ungated), residual map and score, reconstruction BCE (M images each), then
    the painted set's masks (M, S, S), labels (M,), defect kinds and content boxes. A two-sided map reads
    each held-out image and its painted copies against the level of the other held-out images
    (leave-one-out, as :func:`cavga.normal_level.held_out_departures`), not the level stored from all."""
    x, masks, labels, kinds, boxes, valid = painted_set(images, boxes, seed, copies, fade)  # M images, M boxes
    cols: dict[str, list] = {k: [] for k in ("raw", "pred", "map", "pmask", "res", "res_score", "bce")}
    b, n = predictor.cfg.infer.batch_size, len(images)
    groups = [torch.arange(i, min(i + b, len(x))) for i in range(0, len(x), b)]
    levels = None
    if predictor.reads_two_sided:  # each held-out image and its painted copies against the others' level
        clean_valid = None if valid is None else valid[:n]
        levels = held_out_levels(predictor.model, images, b, predictor.device, *predictor.map_views, clean_valid)
        groups = [torch.arange(j, len(x), n) for j in range(n)]  # image j, clean, then its copies
    for j, idx in enumerate(groups):
        vb = None if valid is None else valid[idx]  # (b, 1, S, S)
        own = {} if levels is None else {"level": levels[j]}  # (S, S): the other held-out images' level
        pred = predictor.predict_batch(x[idx], vb, **own)
        _append_answers(cols, predictor, x[idx], vb, pred)
    order = torch.cat(groups).argsort().numpy()  # back to the painted set's order
    return {k: np.concatenate(v)[order] for k, v in cols.items()}, masks, labels, kinds, boxes


def _append_answers(cols: dict[str, list], predictor: Predictor, x, vb, pred) -> None:
    """Append one batch's answers (:func:`predict_painted`'s columns) to ``cols``."""
    cols["bce"].append(bce_score(x, pred.reconstruction, vb).numpy())
    cols["raw"].append(pred.raw_score.numpy())
    cols["pred"].append(pred.label.numpy())
    cols["map"].append(pred.anomaly_map.numpy())
    # every image's mask, whatever its verdict (the paper's IoU; compute_metrics gates it itself)
    cols["pmask"].append(
        peak_mask(
            pred.anomaly_map, predictor.mask_threshold, predictor.mask_peak_fraction, vb, predictor.mask_min_area
        ).numpy()
    )
    cols["res"].append(pred.residual_map.numpy())
    cols["res_score"].append(pred.residual_score.numpy())


def protocol_text(n: int, copies: int, seed: int, fade: float = 1.0) -> str:
    faded = f", faded to U({fade:g}, 1)" if fade < 1.0 else ""
    return f"{n} held-out normals + {copies} painted copies each{faded}, seed {seed}"
