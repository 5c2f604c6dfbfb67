"""Each metric against a hand-computed case and an independent (slow, obvious) computation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import ndimage
from sklearn.metrics import balanced_accuracy_score, roc_auc_score

from cavga.image_scores import verdict_gate
from cavga.metrics import (
    UndefinedMetricError,
    aupro,
    compute_metrics,
    detection_accuracy,
    f1_max,
    image_auroc,
    iou,
    normal_flagged,
    pixel_auroc,
)

KEYS = {
    "image_auroc",
    "pixel_auroc",
    "iou",
    "detection_accuracy",
    "aupro",
    "f1_max",
    "image_f1_max",
    "iou_gated",
    "normal_flagged",
    "normal_flagged_gated",
}


def _blobs(rng: np.random.Generator, n: int, h: int, w: int, per_image: int = 3) -> np.ndarray:
    """Masks (n, h, w) with a few random rectangles each (some touching, so regions vary in shape)."""
    masks = np.zeros((n, h, w), dtype=bool)
    for i in range(n):
        for _ in range(per_image):
            y, x = rng.integers(0, h - 3), rng.integers(0, w - 3)
            dy, dx = rng.integers(1, 5), rng.integers(1, 5)
            masks[i, y : y + dy, x : x + dx] = True
    return masks


def _reference_aupro(maps, masks, fpr_limit: float = 0.3) -> float:
    """Slow AUPRO: every unique score as threshold (positive means score > t), counting directly.

    ``maps`` and ``masks``: (N, H, W) arrays or lists of per-image (H_i, W_i) arrays."""
    region_sel = []  # (image index, boolean (H, W) selector) of every 8-connected gt region
    for idx, m in enumerate(masks):
        lab, n = ndimage.label(m, structure=np.ones((3, 3)))
        region_sel += [(idx, lab == k) for k in range(1, n + 1)]
    n_normal = sum(int((~m).sum()) for m in masks)
    fprs, pros = [1.0], [1.0]  # threshold below every score
    for t in np.unique(np.concatenate([np.ravel(a) for a in maps])):
        above = [a > t for a in maps]
        fprs.append(sum(int((a & ~m).sum()) for a, m in zip(above, masks, strict=True)) / n_normal)
        pros.append(np.mean([above[idx][sel].sum() / sel.sum() for idx, sel in region_sel]))
    fprs, pros = np.array(fprs[::-1]), np.array(pros[::-1])  # increasing FPR
    inside = fprs <= fpr_limit
    x = np.append(fprs[inside], fpr_limit)
    y = np.append(pros[inside], np.interp(fpr_limit, fprs, pros))
    return float(np.trapezoid(y, x) / fpr_limit)


def _brute_f1(scores: np.ndarray, labels: np.ndarray) -> float:
    s, y = scores.ravel(), labels.ravel().astype(bool)
    best = 0.0
    for t in np.unique(s):
        p = s >= t
        tp = (p & y).sum()
        if tp:
            best = max(best, 2 * tp / (p.sum() + y.sum()))
    return best


# --- image / pixel AUROC -------------------------------------------------------------------------


def test_image_auroc_hand_case():
    assert image_auroc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])) == pytest.approx(0.75)


def test_integer_scores_above_float32s_precision_stay_distinct():
    # float32 holds integers exactly only up to 2**24; these two would tie there
    assert image_auroc(np.array([2**24, 2**24 + 1]), np.array([0, 1])) == 1.0


def test_image_auroc_matches_sklearn_and_accepts_torch():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 50)
    scores = rng.random(50) + 0.3 * labels
    expected = roc_auc_score(labels, scores)
    assert image_auroc(scores, labels) == pytest.approx(expected)
    assert image_auroc(torch.from_numpy(scores), torch.from_numpy(labels)) == pytest.approx(expected)


@pytest.mark.parametrize("labels,which", [([0, 0, 0], "only normal"), ([1, 1, 1], "only anomalous")])
def test_image_auroc_one_class_says_which(labels, which):
    with pytest.raises(ValueError, match=which):
        image_auroc(np.array([0.1, 0.2, 0.3]), np.array(labels))


def test_input_validation():
    with pytest.raises(ValueError, match="same shape"):
        image_auroc(np.zeros(3), np.array([0, 1]))
    with pytest.raises(ValueError, match="empty"):
        image_auroc(np.zeros(0), np.zeros(0))
    with pytest.raises(ValueError, match="0/1"):
        image_auroc(np.zeros(3), np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="NaN"):
        image_auroc(np.array([0.1, np.nan]), np.array([0, 1]))
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        pixel_auroc(np.zeros((4, 4)), np.zeros((4, 4)))
    with pytest.raises(ValueError, match="same shape"):
        aupro(np.zeros((1, 4, 4)), np.zeros((1, 4, 5)))


def test_pixel_auroc_hand_case_and_sklearn():
    maps = np.array([[[0.1, 0.4], [0.35, 0.8]]], dtype=np.float32)  # (1, 2, 2)
    masks = np.array([[[0, 0], [1, 1]]])
    assert pixel_auroc(maps, masks) == pytest.approx(0.75)
    rng = np.random.default_rng(1)
    masks = _blobs(rng, 4, 16, 16)
    maps = rng.random((4, 16, 16)).astype(np.float32) + 0.5 * masks
    assert pixel_auroc(maps, masks) == pytest.approx(roc_auc_score(masks.ravel(), maps.ravel()))
    with pytest.raises(ValueError, match="only normal"):
        pixel_auroc(maps, np.zeros_like(masks))


def test_pixel_auroc_with_ties_matches_sklearn():
    rng = np.random.default_rng(11)
    masks = _blobs(rng, 3, 16, 16)
    maps = np.round(rng.random((3, 16, 16)) * 0.6 + 0.3 * masks, 1).astype(np.float32)  # many ties
    assert pixel_auroc(maps, masks) == pytest.approx(roc_auc_score(masks.ravel(), maps.ravel()), abs=1e-12)


# --- images of different sizes (scored at each ground truth's own resolution) ---------------------


def _ragged(rng: np.random.Generator):
    """Maps and masks of three images of different shapes, as lists."""
    shapes = [(9, 14), (20, 6), (11, 11)]
    masks = [_blobs(rng, 1, h, w)[0] for h, w in shapes]
    maps = [(rng.random(m.shape) + 0.5 * m).astype(np.float32) for m in masks]
    return maps, masks


def test_pixel_metrics_take_lists_of_images_of_different_sizes():
    rng = np.random.default_rng(12)
    maps, masks = _ragged(rng)
    flat_maps = np.concatenate([m.ravel() for m in maps])
    flat_masks = np.concatenate([m.ravel() for m in masks])
    assert pixel_auroc(maps, masks) == pytest.approx(roc_auc_score(flat_masks, flat_maps), abs=1e-12)
    assert f1_max(maps, masks) == pytest.approx(_brute_f1(flat_maps, flat_masks))
    assert aupro(maps, masks) == pytest.approx(_reference_aupro(maps, masks), abs=1e-3)
    # regions never join across images: the last column of one image and the first of the next
    edge = [np.zeros((3, 3), bool), np.zeros((3, 3), bool)]
    edge[0][:, 2] = edge[1][:, 0] = True
    edge_maps = [np.where(edge[0], 1.0, 0.0), np.where(edge[1], 0.0, 0.5)]
    assert aupro(edge_maps, edge, fpr_limit=1.0) == pytest.approx(_reference_aupro(edge_maps, edge, 1.0), abs=1e-3)
    preds = [m > 1.0 for m in maps]
    by_hand = [(p & g).sum() / (p | g).sum() for p, g in zip(preds, masks, strict=True)]
    assert iou(preds, masks) == pytest.approx(np.mean(by_hand))
    out = compute_metrics(flat_maps[:3], np.array([0, 1, 1]), np.array([1, 1, 1]), maps, masks, preds)
    assert out["pixel_auroc"] == pytest.approx(pixel_auroc(maps, masks))
    with pytest.raises(ValueError, match="same shape"):
        pixel_auroc(maps, [masks[0], masks[2], masks[1]])
    with pytest.raises(ValueError, match="as many images"):
        aupro(maps, masks[:2])


# --- IoU ------------------------------------------------------------------------------------------


def test_iou_hand_cases():
    pred = np.zeros((3, 4, 4), dtype=bool)
    gt = np.zeros((3, 4, 4), dtype=bool)
    pred[0, :2, :2] = True  # 4 px
    gt[0, :2, :3] = True  # 6 px, 4 shared -> 4/6
    pred[1, 0, 0] = True
    gt[1, 3, 3] = True  # disjoint -> 0
    # image 2: anomalous, but its ground truth is empty: 0, never the perfect 1.0 of 0/0
    assert iou(pred, gt, np.array([1, 1, 1])) == pytest.approx((4 / 6 + 0 + 0) / 3)
    assert iou(pred[2:], gt[2:], np.array([1])) == 0.0
    pred[2] = True
    assert iou(pred[2:], gt[2:], np.array([1])) == 0.0
    # labels None: average over images with a non-empty gt only (images 0 and 1)
    assert iou(pred, gt) == pytest.approx((4 / 6 + 0) / 2)


def test_iou_averages_only_anomalous_images():
    pred = np.zeros((3, 4, 4), dtype=bool)
    gt = np.zeros((3, 4, 4), dtype=bool)
    pred[0, :2, :2] = gt[0, :2, :2] = True  # anomalous, perfect
    pred[1] = True  # normal image with false positives: ignored
    gt[2, 0, :] = True  # anomalous, missed entirely
    assert iou(pred, gt, np.array([1, 0, 1])) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="no anomalous"):
        iou(pred, gt, np.array([0, 0, 0]))
    with pytest.raises(ValueError, match="entries"):
        iou(pred, gt, np.array([1, 0]))


def test_masks_gated_by_the_verdict_hand_case():
    pred = np.zeros((4, 4, 4), dtype=bool)
    gt = np.zeros((4, 4, 4), dtype=bool)
    pred[0, :2, :2] = gt[0, :2, :2] = True  # anomalous, found, verdict anomalous: 1
    pred[1, :2, :2] = gt[1, :2, :3] = True  # anomalous, 4/6, but judged normal: the gate empties it, 0
    pred[2, 0, 0] = True  # normal with a stray pixel, judged normal: gated away
    pred[3, 3, 3] = True  # normal with a stray pixel, judged anomalous: kept
    labels, verdicts = np.array([1, 1, 0, 0]), np.array([1, 0, 0, 1])
    gated = [verdict_gate(p, v) for p, v in zip(pred, verdicts, strict=True)]
    assert iou(gated, gt, labels) == pytest.approx(0.5)
    assert normal_flagged(pred, labels) == 1.0 and normal_flagged(gated, labels) == 0.5
    m = compute_metrics(np.arange(4.0), labels, verdicts, pred.astype(float), gt, pred)
    assert m["iou"] == pytest.approx((1 + 4 / 6) / 2) and m["iou_gated"] == pytest.approx(0.5)
    assert m["normal_flagged"] == 1.0 and m["normal_flagged_gated"] == 0.5
    batch = verdict_gate(torch.as_tensor(pred), torch.as_tensor(verdicts))  # (B, S, S) with (B,)
    assert torch.equal(batch, torch.as_tensor(np.stack(gated)))
    with pytest.raises(ValueError, match="no normal images"):
        normal_flagged(pred[:2], labels[:2])


# --- detection accuracy --------------------------------------------------------------------------


def test_detection_accuracy_hand_case_and_balanced_accuracy():
    labels = np.array([0, 0, 0, 0, 1, 1])
    pred = np.array([0, 0, 0, 1, 1, 0])
    assert detection_accuracy(pred, labels) == pytest.approx((3 / 4 + 1 / 2) / 2)
    rng = np.random.default_rng(2)
    labels, pred = rng.integers(0, 2, 101), rng.integers(0, 2, 101)
    assert detection_accuracy(pred, labels) == pytest.approx(balanced_accuracy_score(labels, pred))
    with pytest.raises(ValueError, match="only anomalous"):
        detection_accuracy(np.array([1, 0]), np.array([1, 1]))


# --- AUPRO ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_aupro_matches_slow_reference(seed):
    rng = np.random.default_rng(seed)
    masks = _blobs(rng, 4, 20, 20, per_image=4)
    maps = (rng.random((4, 20, 20)) + 0.6 * masks).astype(np.float32)
    assert aupro(maps, masks) == pytest.approx(_reference_aupro(maps, masks), abs=1e-3)
    assert aupro(maps, masks, fpr_limit=0.05) == pytest.approx(_reference_aupro(maps, masks, 0.05), abs=1e-3)


def test_aupro_with_ties_matches_reference():
    rng = np.random.default_rng(3)
    masks = _blobs(rng, 3, 16, 16, per_image=3)
    maps = np.round(rng.random((3, 16, 16)) * 0.8 + 0.4 * masks, 1).astype(np.float32)  # many ties
    assert aupro(maps, masks) == pytest.approx(_reference_aupro(maps, masks), abs=1e-3)


def test_aupro_known_values():
    rng = np.random.default_rng(4)
    masks = _blobs(rng, 3, 16, 16)
    assert aupro(masks.astype(np.float32), masks) == pytest.approx(1.0)  # perfect
    assert aupro((~masks).astype(np.float32), masks) == pytest.approx(0.0)  # perfect but inverted
    # constant: the curve is the segment (0,0)-(1,1), so the area up to 0.3 is 0.3^2/2 -> / 0.3 = 0.15
    assert aupro(np.full(masks.shape, 0.7, np.float32), masks) == pytest.approx(0.15)
    assert aupro(np.full(masks.shape, 0.7, np.float32), masks, fpr_limit=1.0) == pytest.approx(0.5)


def test_aupro_uses_8_connectivity():
    maps = np.full((1, 6, 6), 0.5, np.float32)
    masks = np.zeros((1, 6, 6), dtype=bool)
    masks[0, 0, 0] = masks[0, 1, 1] = True  # diagonal neighbours: one region with 8-connectivity
    masks[0, 4, 4] = True
    maps[0, 0, 0], maps[0, 1, 1], maps[0, 4, 4] = 1.0, 0.0, 0.0
    # 8-conn: PRO = mean(1/2, 0) = 0.25 flat up to FPR 1; 4-conn would give mean(1, 0, 0) = 1/3
    assert aupro(maps, masks) == pytest.approx(0.25)


def test_aupro_undefined_without_regions():
    assert issubclass(UndefinedMetricError, ValueError)
    with pytest.raises(UndefinedMetricError, match="no anomalous region"):
        aupro(np.random.default_rng(0).random((2, 8, 8)), np.zeros((2, 8, 8)))


# --- F1-max --------------------------------------------------------------------------------------


def test_f1_max_matches_brute_force():
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 2, 60)
    scores = np.round(rng.random(60) + 0.4 * labels, 2)
    assert f1_max(scores, labels) == pytest.approx(_brute_f1(scores, labels))
    masks = _blobs(rng, 3, 12, 12)
    maps = rng.random((3, 12, 12)).astype(np.float32) + 0.5 * masks
    assert f1_max(maps, masks) == pytest.approx(_brute_f1(maps, masks))
    assert f1_max(np.array([0.2, 0.9]), np.array([0, 1])) == pytest.approx(1.0)


# --- compute_metrics -----------------------------------------------------------------------------


def _split(rng: np.random.Generator, n: int = 8, s: int = 16):
    labels = np.array([0, 1] * (n // 2))
    masks = _blobs(rng, n, s, s) & labels[:, None, None].astype(bool)
    maps = (rng.random((n, s, s)) + 0.5 * masks).astype(np.float32)
    scores = maps.reshape(n, -1).max(axis=1)
    return scores, labels, (scores > 1.0).astype(int), maps, masks, maps > 1.0


def test_compute_metrics_all_keys_and_values():
    rng = np.random.default_rng(6)
    scores, labels, pred, maps, masks, pmasks = _split(rng)
    out = compute_metrics(scores, labels, pred, maps, masks, pmasks)
    assert set(out) == KEYS | {"undefined"}
    assert out["undefined"] == []
    assert all(isinstance(out[k], float) and not math.isnan(out[k]) for k in KEYS)
    assert out["pixel_auroc"] == pytest.approx(pixel_auroc(maps, masks))
    assert out["aupro"] == pytest.approx(aupro(maps, masks))
    assert out["iou"] == pytest.approx(iou(pmasks, masks, labels))
    t = compute_metrics(*(torch.from_numpy(np.asarray(a)) for a in (scores, labels, pred, maps, masks, pmasks)))
    assert {k: t[k] for k in KEYS} == pytest.approx({k: out[k] for k in KEYS})


def test_compute_metrics_pixel_metrics_only_on_real_masks():
    rng = np.random.default_rng(7)
    scores, labels, pred, maps, masks, pmasks = _split(rng)
    has_mask = np.ones(8, dtype=bool)
    has_mask[[1, 2]] = False  # an anomalous image without gt; a normal image (counts anyway)
    out = compute_metrics(scores, labels, pred, maps, masks, pmasks, has_mask=has_mask)
    keep = np.arange(8) != 1
    assert out["pixel_auroc"] == pytest.approx(pixel_auroc(maps[keep], masks[keep]))
    assert out["aupro"] == pytest.approx(aupro(maps[keep], masks[keep]))
    assert out["iou"] == pytest.approx(iou(pmasks[keep], masks[keep], labels[keep]))
    assert out["image_auroc"] == pytest.approx(image_auroc(scores, labels))


def test_compute_metrics_one_class_is_nan_and_listed():
    rng = np.random.default_rng(8)
    scores, labels, pred, maps, masks, pmasks = _split(rng)
    normal = labels == 0
    out = compute_metrics(scores[normal], labels[normal], pred[normal], maps[normal], masks[normal], pmasks[normal])
    assert set(out) == KEYS | {"undefined"}
    flagged = {"normal_flagged", "normal_flagged_gated"}  # normal images alone: the one defined
    assert set(out["undefined"]) == KEYS - flagged
    assert all(math.isnan(out[k]) for k in KEYS - flagged)
    with pytest.raises(ValueError, match="same shape"):  # malformed input still raises
        compute_metrics(scores, labels[:-1], pred, maps, masks, pmasks)


def test_compute_metrics_no_gt_masks_for_anomalies():
    rng = np.random.default_rng(9)
    scores, labels, pred, maps, masks, pmasks = _split(rng)
    out = compute_metrics(scores, labels, pred, maps, masks, pmasks, has_mask=labels == 0)
    assert set(out["undefined"]) == {"pixel_auroc", "iou", "aupro", "f1_max", "iou_gated"}
    assert not math.isnan(out["image_auroc"])
