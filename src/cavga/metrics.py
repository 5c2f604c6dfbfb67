"""Detection and localisation metrics of the CAVGA paper (Sec. 4) and the MVTec AD benchmark.

All functions are pure, take numpy arrays or torch tensors and return a Python ``float``.
Pixel metrics take the maps and masks of N images either as one (N, H, W) array or as a list of N
(H_i, W_i) arrays, so that every image is scored at its own (ground-truth) resolution; map i and
mask i must have the same shape.
Bad input (mismatched shapes, empty arrays, non-binary labels, NaN scores) raises ``ValueError``;
a metric that is undefined for otherwise valid input (e.g. only one class present) raises
:class:`UndefinedMetricError`, a ``ValueError`` subclass that :func:`compute_metrics` turns into NaN.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import ndimage
from sklearn.metrics import roc_auc_score

__all__ = [
    "UndefinedMetricError",
    "aupro",
    "compute_metrics",
    "detection_accuracy",
    "f1_max",
    "image_auroc",
    "iou",
    "pixel_auroc",
    "pro_curve",
]

# 8-connectivity, as in the official MVTec AD evaluation code (``structure = np.ones((3, 3))``).
EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)  # regions of masks here and in cavga.min_area


class UndefinedMetricError(ValueError):
    """The metric is undefined for this (valid) input, e.g. only one class is present."""


def _np(x: Any) -> np.ndarray:
    """A numpy view of ``x``; torch tensors are detached and moved to the CPU."""
    if hasattr(x, "detach"):
        x = x.detach().cpu()
        x = (x.float() if str(x.dtype) == "torch.bfloat16" else x).numpy()
    return np.asarray(x)


def _scores(x: Any, name: str) -> np.ndarray:
    """Real-valued scores as float32 (float64 and integers as float64: float32 would tie integers above
    2**24), checked non-empty and finite."""
    x = _np(x)
    if x.dtype != np.float64:
        x = x.astype(np.float64 if x.dtype.kind in "iub" else np.float32, copy=False)
    if x.size == 0:
        raise ValueError(f"{name} is empty")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return x


def _binary(x: Any, name: str) -> np.ndarray:
    """A {0, 1} (or bool) array as bool, checked non-empty and binary."""
    x = _np(x)
    if x.size == 0:
        raise ValueError(f"{name} is empty")
    if x.dtype != bool:
        if not np.isin(x, (0, 1)).all():
            raise ValueError(f"{name} must contain only 0/1 (or bool) values")
        x = x.astype(bool)
    return x


def _same_shape(a: np.ndarray, b: np.ndarray, na: str, nb: str) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{na} and {nb} must have the same shape, got {a.shape} and {b.shape}")


def _check_1d(x: np.ndarray, name: str) -> None:
    if x.ndim != 1:
        raise ValueError(f"{name} must be 1-D (N,), got shape {x.shape}")


def _per_image(x: Any, name: str, check) -> list[np.ndarray]:
    """N per-image 2-D arrays from one (N, H, W) array or a list of (H_i, W_i) arrays, each checked."""
    if isinstance(x, (list, tuple)):
        if not x:
            raise ValueError(f"{name} is empty")
        out = [check(m, f"{name}[{i}]") for i, m in enumerate(x)]
        for i, m in enumerate(out):
            if m.ndim != 2:
                raise ValueError(f"{name}[{i}] must be (H, W), got shape {m.shape}")
        return out
    x = check(x, name)
    if x.ndim != 3:
        raise ValueError(f"{name} must be (N, H, W) or a list of (H, W), got shape {x.shape}")
    return list(x)  # views, no copy


def _maps(x: Any, name: str) -> list[np.ndarray]:
    return _per_image(x, name, _scores)


def _masks(x: Any, name: str) -> list[np.ndarray]:
    return _per_image(x, name, _binary)


def _same_shapes(a: list[np.ndarray], b: list[np.ndarray], na: str, nb: str) -> None:
    if len(a) != len(b):
        raise ValueError(f"{na} and {nb} must hold as many images, got {len(a)} and {len(b)}")
    for i, (x, y) in enumerate(zip(a, b, strict=True)):
        if x.shape != y.shape:
            raise ValueError(f"{na} and {nb} must have the same shape, got {x.shape} and {y.shape} (image {i})")


def _pool(arrays: list[np.ndarray]) -> np.ndarray:
    """All pixels of all images as one 1-D array (P,)."""
    return arrays[0].ravel() if len(arrays) == 1 else np.concatenate([a.ravel() for a in arrays])


def _flat(x: Any, name: str, check) -> np.ndarray:
    """Scores or labels of any shape, or a list of per-image arrays, flattened to (P,)."""
    if isinstance(x, (list, tuple)):
        return _pool(_per_image(x, name, check))
    return check(x, name).ravel()


def _both_classes(labels: np.ndarray, metric: str, what: str = "labels") -> None:
    n_pos = int(np.count_nonzero(labels))
    if n_pos == 0:
        raise UndefinedMetricError(f"{metric} is undefined: {what} contain only normal (0) samples")
    if n_pos == labels.size:
        raise UndefinedMetricError(f"{metric} is undefined: {what} contain only anomalous (1) samples")


def _sorted_classes(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The scores of the positives and of the negatives, each sorted ascending: (n_pos,), (n_neg,)."""
    pos = np.sort(scores[labels])
    neg = np.sort(scores[~labels])
    return pos, neg


def image_auroc(scores: Any, labels: Any) -> float:
    """Area under the ROC curve of image-level anomaly scores (N,) against labels (N,) in {0, 1}."""
    scores, labels = _scores(scores, "scores"), _binary(labels, "labels")  # (N,), (N,)
    _check_1d(scores, "scores")
    _same_shape(scores, labels, "scores", "labels")
    _both_classes(labels, "image_auroc")
    return float(roc_auc_score(labels, scores))


def pixel_auroc(anomaly_maps: Any, masks: Any) -> float:
    """AUROC over all pixels of all images pooled together (MVTec AD's pixel-level AUROC).

    Exact, ties counting one half (as sklearn's ``roc_auc_score``): the Mann-Whitney statistic from
    the sorted normal scores, without sorting all pixels together (tens of millions at 900x900).
    """
    maps, gts = _maps(anomaly_maps, "anomaly_maps"), _masks(masks, "masks")
    _same_shapes(maps, gts, "anomaly_maps", "masks")
    scores, labels = _pool(maps), _pool(gts)  # (P,), (P,)
    _both_classes(labels, "pixel_auroc", "masks")
    pos, neg = _sorted_classes(scores, labels)  # (n_pos,), (n_neg,)
    below = np.searchsorted(neg, pos, side="left")  # (n_pos,) normal pixels scoring lower
    ties = np.searchsorted(neg, pos, side="right") - below  # (n_pos,) normal pixels scoring the same
    wins = float(below.sum(dtype=np.float64)) + 0.5 * float(ties.sum(dtype=np.float64))
    return wins / (float(pos.size) * float(neg.size))


def iou(pred_masks: Any, gt_masks: Any, labels: Any = None) -> float:
    """The paper's IoU: |P ∩ G| / |P ∪ G| per anomalous image, averaged over those images.

    Anomalous images are those with label 1 or, when ``labels`` is None, those whose ground-truth mask
    is non-empty. An anomalous image whose ground truth is empty cannot be localised: it scores 0,
    whatever the prediction (never the 1.0 that 0/0 would suggest).
    """
    pred, gt = _masks(pred_masks, "pred_masks"), _masks(gt_masks, "gt_masks")  # N x (H_i, W_i)
    _same_shapes(pred, gt, "pred_masks", "gt_masks")
    if labels is None:
        sel = np.array([g.any() for g in gt])  # (N,)
    else:
        sel = _binary(labels, "labels")  # (N,)
        _check_1d(sel, "labels")
        if sel.shape[0] != len(pred):
            raise ValueError(f"labels has {sel.shape[0]} entries but there are {len(pred)} masks")
    if not sel.any():
        raise UndefinedMetricError("iou is undefined: there are no anomalous images")
    per_image = [
        np.count_nonzero(p & g) / np.count_nonzero(p | g) if g.any() else 0.0
        for p, g, s in zip(pred, gt, sel, strict=True)
        if s
    ]
    return float(np.mean(per_image))


def normal_flagged(pred_masks: Any, labels: Any) -> float:
    """The share of normal images (label 0) whose predicted mask flags any pixel: the false alarms
    in space that IoU, an average over anomalous images, cannot see."""
    pred, labels = _masks(pred_masks, "pred_masks"), _binary(labels, "labels")  # N x (H_i, W_i), (N,)
    _check_1d(labels, "labels")
    if labels.shape[0] != len(pred):
        raise ValueError(f"labels has {labels.shape[0]} entries but there are {len(pred)} masks")
    if labels.all():
        raise UndefinedMetricError("normal_flagged is undefined: there are no normal images")
    return float(np.mean([p.any() for p, y in zip(pred, labels, strict=True) if not y]))


def detection_accuracy(pred_labels: Any, labels: Any) -> float:
    """The paper's detection accuracy: mean of the accuracies on normal and on anomalous images."""
    pred, labels = _binary(pred_labels, "pred_labels"), _binary(labels, "labels")  # (N,)
    _check_1d(labels, "labels")
    _same_shape(pred, labels, "pred_labels", "labels")
    _both_classes(labels, "detection_accuracy")
    acc_normal = np.count_nonzero(~pred & ~labels) / np.count_nonzero(~labels)
    acc_anomalous = np.count_nonzero(pred & labels) / np.count_nonzero(labels)
    return float((acc_normal + acc_anomalous) / 2)


def _regions(masks: list[np.ndarray]) -> tuple[np.ndarray, int]:
    """Every image's 8-connected ground-truth regions, numbered 1..R across images, pooled: (P,), R."""
    out, total = [], 0
    for m in masks:
        lab, n = ndimage.label(m, structure=EIGHT_CONNECTED)  # (H_i, W_i) int32
        lab = lab.ravel()
        if total:
            lab[lab > 0] += total
        out.append(lab)
        total += n
    return (out[0] if len(out) == 1 else np.concatenate(out)), total


def pro_curve(anomaly_maps: Any, masks: Any, fpr_limit: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    """The per-region-overlap curve (FPR (T,), PRO (T,)) from FPR 0 up to ``fpr_limit``, as :func:`aupro`
    integrates it: a point at every distinct score (ties grouped), (0, 0) first, and the last point
    linearly interpolated at ``fpr_limit`` when the curve passes it."""
    maps, gts = _maps(anomaly_maps, "anomaly_maps"), _masks(masks, "masks")
    _same_shapes(maps, gts, "anomaly_maps", "masks")
    if not 0.0 < fpr_limit <= 1.0:
        raise ValueError(f"fpr_limit must be in (0, 1], got {fpr_limit}")
    regions, n_regions = _regions(gts)  # (P,) int32
    if n_regions == 0:
        raise UndefinedMetricError("aupro is undefined: the masks contain no anomalous region")
    n_neg = regions.size - int(np.count_nonzero(regions))
    if n_neg == 0:
        raise UndefinedMetricError("aupro is undefined: the masks contain no normal pixel")
    maps = _pool(maps)  # (P,)

    # Only thresholds down to the first one whose FPR reaches fpr_limit matter, and the curve there
    # depends only on pixels scoring at least that much: keep those and sort them alone.
    neg_scores = maps[regions == 0]  # (n_neg,)
    m = min(n_neg, max(1, math.ceil(fpr_limit * n_neg)))
    t_min = np.partition(neg_scores, n_neg - m)[n_neg - m]  # m-th largest normal score
    del neg_scores
    keep = np.flatnonzero(maps >= t_min)  # (K,)
    # descending score; the order within ties is irrelevant (the curve is read at the end of each tie)
    order = keep[np.argsort(maps[keep])[::-1]]  # (K,)
    del keep
    scores = maps[order]  # (K,)
    lab = regions[order]  # (K,)
    del order

    sizes = np.bincount(regions).astype(np.float64)  # (n_regions + 1,)
    pro_w = 1.0 / (sizes * n_regions)  # (n_regions + 1,) weight of one pixel of each region
    pro_w[0] = 0.0
    pro = np.cumsum(pro_w[lab])  # (K,)
    fpr = np.cumsum(lab == 0, dtype=np.float64) / n_neg  # (K,)
    # The curve point of threshold t is after the last pixel scoring t.
    last = np.flatnonzero(np.append(scores[1:] != scores[:-1], True))  # (T,)
    fpr = np.concatenate(([0.0], fpr[last]))  # (T + 1,)
    pro = np.concatenate(([0.0], np.minimum(pro[last], 1.0)))  # (T + 1,)

    end = int(np.searchsorted(fpr, fpr_limit, side="right"))  # fpr[:end] <= fpr_limit
    x, y = fpr[:end], pro[:end]
    if x[-1] < fpr_limit and end < fpr.size:
        x0, x1, y0, y1 = fpr[end - 1], fpr[end], pro[end - 1], pro[end]
        x = np.append(x, fpr_limit)
        y = np.append(y, y0 + (y1 - y0) * (fpr_limit - x0) / (x1 - x0))
    return x, y


def aupro(anomaly_maps: Any, masks: Any, fpr_limit: float = 0.3) -> float:
    """Normalised area under the per-region-overlap curve up to ``fpr_limit`` (Bergmann et al. 2021).

    Ground-truth regions are the 8-connected components of each mask (the official MVTec AD code uses
    ``np.ones((3, 3))`` as the structure). At a threshold t, pixels with score >= t are positive;
    PRO(t) is the mean over all regions of the fraction of the region's pixels that are positive and
    FPR(t) the fraction of all normal (mask 0) pixels that are positive. The curve (:func:`pro_curve`),
    with a point at every distinct score (ties grouped) and at (0, 0), is integrated with the trapezoid
    rule from FPR 0 to ``fpr_limit`` (linearly interpolated there) and divided by ``fpr_limit``.
    """
    x, y = pro_curve(anomaly_maps, masks, fpr_limit)
    return float(np.trapezoid(y, x) / fpr_limit)


def f1_max(scores: Any, labels: Any) -> float:
    """Best F1 over all thresholds (score >= t is positive) of ``scores`` against binary ``labels``.

    Either arrays of any equal shapes (flattened) or lists of per-image arrays. Needs at least one
    positive; with no negatives it is 1.0. F1 = 2 TP / (TP + FP + n_pos) peaks at a threshold equal
    to some positive's score, so only those are tried.
    """
    if isinstance(scores, (list, tuple)) or isinstance(labels, (list, tuple)):
        s, y = _maps(scores, "scores"), _masks(labels, "labels")
        _same_shapes(s, y, "scores", "labels")
        scores, labels = _pool(s), _pool(y)  # (P,), (P,)
    else:
        scores, labels = _scores(scores, "scores"), _binary(labels, "labels")
        _same_shape(scores, labels, "scores", "labels")
        scores, labels = scores.ravel(), labels.ravel()  # (P,), (P,)
    if not labels.any():
        raise UndefinedMetricError("f1_max is undefined: labels contain no anomalous (1) sample")
    pos, neg = _sorted_classes(scores, labels)  # (n_pos,), (n_neg,)
    t = np.unique(pos)  # (T,) candidate thresholds
    tp = pos.size - np.searchsorted(pos, t, side="left")  # (T,)
    fp = neg.size - np.searchsorted(neg, t, side="left")  # (T,)
    return float(np.max(2.0 * tp / (tp + fp + pos.size)))


def compute_metrics(
    scores: Any,
    labels: Any,
    pred_labels: Any,
    anomaly_maps: Any,
    masks: Any,
    pred_masks: Any,
    has_mask: Any = None,
) -> dict[str, Any]:
    """All metrics of a test split as a dict of floats, plus an ``"undefined"`` list of names.

    ``scores`` rank images (image AUROC and F1); ``pred_labels`` are the thresholded verdicts.
    Maps and masks: one (N, H, W) array or N per-image (H_i, W_i) arrays. Pixel metrics
    (``pixel_auroc``, ``aupro``, ``f1_max``, ``iou``) use only images with real ground truth:
    ``has_mask`` True (default: all) or label 0, since a normal image's all-zero mask is exact.
    ``iou`` averages over the anomalous ones among those, every image's mask as given (the paper's
    protocol); ``iou_gated`` empties the masks of images whose verdict is normal first
    (``infer.mask_gate: verdict``), and ``normal_flagged[_gated]`` is the share of normal images
    with any flagged pixel, without and with that gate. A metric that is undefined for this data
    (e.g. one class only, no anomalous region) is NaN and its name is listed under ``"undefined"``;
    malformed input (shapes, dtypes, NaN scores) still raises ``ValueError``.
    """
    scores, labels = _scores(scores, "scores"), _binary(labels, "labels")  # (N,)
    pred_labels = _binary(pred_labels, "pred_labels")  # (N,)
    maps, gts = _maps(anomaly_maps, "anomaly_maps"), _masks(masks, "masks")  # N x (H_i, W_i)
    pmasks = _masks(pred_masks, "pred_masks")  # N x (H_i, W_i)
    _check_1d(labels, "labels")
    _same_shape(scores, labels, "scores", "labels")
    _same_shape(pred_labels, labels, "pred_labels", "labels")
    _same_shapes(maps, gts, "anomaly_maps", "masks")
    _same_shapes(pmasks, gts, "pred_masks", "masks")
    if len(maps) != labels.shape[0]:
        raise ValueError(f"there are {labels.shape[0]} labels but {len(maps)} anomaly maps")
    if has_mask is None:
        real = np.ones(labels.shape, dtype=bool)  # (N,)
    else:
        real = _binary(has_mask, "has_mask")  # (N,)
        _same_shape(real, labels, "has_mask", "labels")
    real = real | ~labels  # (N,)
    keep = np.flatnonzero(real)
    pix_maps, pix_masks, pix_pred = ([a[i] for i in keep] for a in (maps, gts, pmasks))
    pix_labels = labels[real]
    # the masks an answer carries under infer.mask_gate: verdict, emptied where the verdict is normal
    gated = [p & bool(v) for p, v in zip(pmasks, pred_labels, strict=True)]  # N x (H_i, W_i)

    calls = {
        "image_auroc": lambda: image_auroc(scores, labels),
        "pixel_auroc": lambda: pixel_auroc(pix_maps, pix_masks),
        "iou": lambda: iou(pix_pred, pix_masks, pix_labels),
        "detection_accuracy": lambda: detection_accuracy(pred_labels, labels),
        "aupro": lambda: aupro(pix_maps, pix_masks),
        "f1_max": lambda: f1_max(pix_maps, pix_masks),
        "image_f1_max": lambda: f1_max(scores, labels),
        "iou_gated": lambda: iou([gated[i] for i in keep], pix_masks, pix_labels),
        "normal_flagged": lambda: normal_flagged(pmasks, labels),
        "normal_flagged_gated": lambda: normal_flagged(gated, labels),
    }
    pixel_metrics = ("pixel_auroc", "iou", "aupro", "f1_max", "iou_gated")
    out: dict[str, Any] = {}
    undefined: list[str] = []
    for name, call in calls.items():
        try:
            if name in pixel_metrics and not real.any():
                raise UndefinedMetricError(f"{name} is undefined: no image has a ground-truth mask")
            out[name] = call()
        except UndefinedMetricError:
            out[name] = float("nan")
            undefined.append(name)
    out["undefined"] = undefined
    return out
