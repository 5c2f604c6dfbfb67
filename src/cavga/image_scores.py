"""Image scores and the statistics that normalise them, all fitted on held-out normal images.

The score functions are pure: (B, 3, S, S) images and reconstructions (and maps) in, (B,) or
(B, S, S) out; ``valid`` (B, 1, S, S) marks each image's content under ``data.resize``: pad or center.

Normalising the unsupervised score.  The paper normalises s_a to [0, 1] and thresholds at 0.5
without saying how.  Using test images for this would leak their labels, so the normaliser is
fitted on normal images held out from training (``data.val_fraction``, for CAVGA-u and -w alike):
``s = clip((s_a - lo) / (2 * (hi - lo)), 0, 1)`` with ``lo`` the lowest held-out score and ``hi``
their ``normalizer_quantile`` (0.95) quantile.  Score 0.5 is then "as bad as the worst 5% of unseen
normal images", a false-alarm budget a user can read and change without retraining.

Which quantile (``infer.normalizer_rank``).  With few held-out images the usual interpolated
quantile breaks that promise: an unseen normal image exceeds the k-th smallest of n held-out scores
with probability (n + 1 - k) / (n + 1) (the images being exchangeable), and numpy's 0.95 quantile of
21 scores is the 20th smallest, a false-alarm rate of 2/22 = 9%.  "conformal" (the default) takes
the k-th smallest with k = ceil((n + 1) q), the split-conformal rank, whose rate is at most 1 - q;
with n + 1 < 1 / (1 - q) held-out images no rank can promise it, and the largest is taken.  Leaving
each held-out normal out in turn on five stored bottle runs (105 held-out scores), the interpolated
threshold flagged 9.5% of them and the conformal one 4.8% (``benchmarks/false_alarms.py``;
docs/results.md, "Session 42").

CAVGA-w's probability is calibrated the same way, on the same held-out normals: trained with a
handful of anomalous images (one, at 2% of bottle's), C's probabilities rank images well but sit
far from 0.5 (bottle, CAVGA-Rw: image AUROC 0.894 with detection accuracy 0.597 at p >= 0.5), so
its own 0.5 is no false-alarm budget at all.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from . import data as D
from .errors import CavgaError
from .losses import reconstruction_terms
from .min_area import drop_small_regions


def native_map(m: Tensor, size: tuple[int, int], resize: str = "stretch") -> np.ndarray:
    """A map at the model's resolution (S, S) back at an image's own (H, W), float32: its content
    box (all of it unless ``data.resize`` is pad or center) resized bilinearly."""
    return D.from_canvas(m, size, resize).clamp(0, 1).numpy()  # (H, W)


def reconstruction_score(x: Tensor, x_hat: Tensor, valid: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """The residual map |x - x_hat| averaged over colour (B, S, S), and CAVGA-u's raw image score,
    its mean over the image's content (B,). ``valid`` (B, 1, S, S) marks content (``data.resize:
    pad``); the padding then counts as perfectly reconstructed and is left out of the mean."""
    residual = (x - x_hat).abs() if valid is None else (x - x_hat).abs() * valid  # (B, 3, S, S)
    residual = residual.mean(dim=1)  # (B, S, S)
    return residual, content_mean(residual, valid)


def bce_score(x: Tensor, x_hat: Tensor, valid: Tensor | None = None) -> Tensor:
    """The raw image score under ``infer.image_score: bce`` (B,): Eq. 1's reconstruction term above
    its floor, BCE(x, x_hat) - BCE(x, x), averaged over colour and the image's content (``valid``).

    Per pixel that is the KL divergence of Bernoulli(x_hat) from Bernoulli(x): zero for a perfect
    reconstruction. The BCE itself is not: its floor, BCE(x, x), the entropy of a pixel's value, is
    large for grey pixels and zero for black or white ones, so it scores how grey an image is as
    well as how badly it is rebuilt. Measured on MNIST (docs/results.md): the raw BCE ranked painted
    greys on the held-out normals well and other digits badly (test AUROC mean 0.801 against the
    mean |x - x_hat|'s 0.903 on the same ten runs; above its floor, 0.950). The mean, not the paper's sum, keeps
    padded images of different content areas comparable; at one size the two rank alike."""
    terms = (reconstruction_terms(x, x_hat) - reconstruction_terms(x, x)).mean(dim=1)  # (B, S, S), >= 0
    terms = terms if valid is None else terms * valid[:, 0]
    return content_mean(terms, valid)


# The image scores (infer.image_score) normalised on their own held-out values rather than on the
# reconstruction difference's: the Normalizer field holding them, and what they are, for messages.
# One entry for each of config.CAVGA_IMAGE_SCORES (test_image_score checks).
OWN_HELD_OUT = {"map": ("map_max", "map peaks"), "bce": ("bce_scores", "reconstruction BCEs")}


def map_peak(amap: Tensor, valid: Tensor | None = None, lowest: bool = False) -> Tensor:
    """(B,): each map's (B, S, S) highest value (``lowest``: lowest) over its content (``valid``)."""
    if valid is None:
        return amap.flatten(1).amin(dim=1) if lowest else amap.flatten(1).amax(dim=1)
    inside = valid[:, 0].to(amap.device) > 0  # (B, S, S)
    fill = torch.full_like(amap, float("inf") if lowest else float("-inf"))
    m = torch.where(inside, amap, fill).flatten(1)
    return m.amin(dim=1) if lowest else m.amax(dim=1)


def peak_mask(
    amap: Tensor | np.ndarray,
    threshold: float,
    fraction: float = 0.0,
    valid: Tensor | None = None,
    min_area: float = 0.0,
):
    """The mask of maps (B, S, S) (a Tensor; ``valid`` marks content) or of one map (H, W) (an array):
    pixels at or above ``threshold`` raised ``fraction`` of the way to the map's own peak over its
    content, ``t + r * max(peak - t, 0)`` (``infer.mask_peak_fraction``; the plain threshold at 0).
    The level never drops below ``t``: a map below it keeps an empty mask, and one at the quantile
    itself (``t`` is the float32 just above it) does not round its ties back in. Regions smaller than
    ``min_area`` of the content are dropped (``infer.mask_min_area``, :mod:`cavga.min_area`)."""
    if isinstance(amap, np.ndarray):  # one map at its image's own size
        mask = amap >= threshold + fraction * max(float(amap.max()) - threshold, 0.0)  # (H, W)
        return drop_small_regions(mask, min_area)
    level = threshold + fraction * (map_peak(amap, valid) - threshold).clamp_min(0.0)  # (B,)
    mask = amap >= level[:, None, None]  # (B, S, S)
    if valid is not None:  # the padding is never part of a defect region
        mask = mask & (valid[:, 0].to(mask.device) > 0)  # (B, S, S)
    return drop_small_regions(mask, min_area, valid)  # (B, S, S)


def level_above(threshold: float, margin: float = 0.0) -> float:
    """The float32 just above ``threshold`` raised by ``margin`` of the way to the map's ceiling 1:
    ties at a quantile (a map that is 0 on most normal pixels) stay unflagged (``infer.mask_margin``)."""
    return float(np.nextafter(np.float32(threshold + margin * (1.0 - threshold)), np.float32(np.inf)))


# The same-run residual's mask before session 58, and where nothing else is decided: the residual
# scaled by its held-out peak, masked at 0.5 (half the highest held-out residual), no peak fraction.
FIXED_RESIDUAL_LEVEL = (0.5, 0.0)


def residual_mask_level(decision: dict[str, Any] | None, normalizer: Normalizer | None) -> tuple[float, float]:
    """(threshold, peak fraction) of the residual baseline's mask, on the residual scaled by its
    held-out peak: as training's end decided it on painted defects (``decision``, the checkpoint's
    "residual_mask"; :func:`cavga.mask_threshold.decide_residual_mask`) where it was decided on these
    statistics (the same held-out peak), else FIXED_RESIDUAL_LEVEL."""
    if decision and normalizer is not None and decision.get("residual_peak") == normalizer.residual_peak:
        threshold, fraction = decision["residual_mask"]
        return float(threshold), float(fraction)
    return FIXED_RESIDUAL_LEVEL


def verdict_gate(mask: Tensor | np.ndarray, label: Tensor | int) -> Tensor | np.ndarray:
    """Masks (B, S, S) with verdicts (B,), or one mask (H, W) with its verdict, emptied where the
    verdict is normal (``infer.mask_gate: verdict``): an image judged normal shows no defect region."""
    if isinstance(mask, np.ndarray):
        return mask & bool(label)  # (H, W)
    return mask & (label.to(mask.device) > 0)[:, None, None]  # (B, S, S)


def final_mask(
    amap: Tensor | np.ndarray,
    label: Tensor | int,
    threshold: float,
    fraction: float = 0.0,
    min_area: float = 0.0,
    gate: bool = False,
    valid: Tensor | None = None,
):
    """The one rule from a map to its final mask (``amap`` and ``label`` as :func:`verdict_gate` takes
    them): :func:`peak_mask` at ``threshold`` raised by ``fraction``, without regions under ``min_area``,
    emptied where the verdict is normal when ``gate`` (``infer.mask_gate: verdict``) is on. Answers,
    evaluate and the report's gallery all draw their masks with it."""
    mask = peak_mask(amap, threshold, fraction, valid, min_area)
    return verdict_gate(mask, label) if gate else mask


def answer_mask(predictor: Any, amap: Tensor | np.ndarray, label: Tensor | int, valid: Tensor | None = None):
    """The mask an image's answer carries: :func:`final_mask` with ``predictor``'s ``mask_threshold``,
    ``mask_peak_fraction``, ``mask_min_area`` and ``mask_gate``."""
    p = predictor
    return final_mask(amap, label, p.mask_threshold, p.mask_peak_fraction, p.mask_min_area, bool(p.mask_gate), valid)


def content_mean(m: Tensor, valid: Tensor | None = None) -> Tensor:
    """(B,): the mean of maps ``m`` (B, S, S) over each image's content (``valid`` (B, 1, S, S), or all)."""
    if valid is None:
        return m.flatten(1).mean(dim=1)
    return m.flatten(1).sum(dim=1) / valid.to(m.device).flatten(1).sum(dim=1).clamp_min(1.0)


@dataclass
class Normalizer:
    """Maps raw reconstruction scores to [0, 1]: ``lo`` -> 0, ``hi`` -> 0.5 (see module doc)."""

    lo: float
    hi: float
    quantile: float
    n_images: int
    residual_peak: float  # the held-out images' highest residual pixel (of residual_blur): scales the baseline
    scores: list[float] = field(default_factory=list)  # the held-out raw scores, to refit ``hi``
    # Quantiles 0, 0.0001, ..., 1 (MAP_QUANTILE_LEVELS; 0, 0.001, ... in runs from before) of the
    # anomalous map over the held-out images' pixels: the thresholds ``infer.mask_quantile`` picks from.
    map_quantiles: list[float] = field(default_factory=list)
    # CAVGA-w: C's anomalous probability on the same held-out normals (infer.classifier_verdict)
    classifier_scores: list[float] = field(default_factory=list)
    # Each held-out image's reconstruction BCE (bce_score): normalises infer.image_score "bce"
    bce_scores: list[float] = field(default_factory=list)
    # The map in use (1 - A or A, A_ca or 1 - A_cn) on the same held-out normals: each image's
    # highest and lowest value over its content; the highest normalise infer.image_score "map"
    map_max: list[float] = field(default_factory=list)
    map_min: list[float] = field(default_factory=list)
    weak_map: str = "anomalous"  # CAVGA-w: the map the map statistics above are of (infer.weak_map)
    # CAVGA-u: the map the map statistics are of (infer.attention_direction; before the direct map
    # had its own statistics, they were always of 1 - A, hence the default)
    direction: str = "inverse"
    # MAP_VERSION of the maps the statistics were fitted on (runs from before it was recorded: 1)
    map_version: int = 1
    shifted: bool = False  # whether the map statistics are of the half-cell-shifted map (infer.shifted_map)
    enlarged: bool = False  # whether they are of the map averaged with the enlarged image's (infer.enlarged_map)
    blur: float = 0.0  # the Gaussian blur, in pixels, of the maps they are of (infer.map_blur; before it: none)
    rank: str = "interpolated"  # how ``hi`` was read off the scores (infer.normalizer_rank; before it: interpolated)

    @staticmethod
    def fit(
        scores: np.ndarray, quantile: float, residual_peak: float, map_quantiles: list[float], rank: str = "conformal"
    ) -> Normalizer:
        return Normalizer(
            lo=float(scores.min()),
            hi=held_out_quantile(scores, quantile, rank),
            rank=rank,
            quantile=quantile,
            n_images=len(scores),
            residual_peak=residual_peak,
            scores=[float(v) for v in scores],
            map_quantiles=map_quantiles,
        )

    @property
    def residual_blur(self) -> float:
        """The Gaussian blur, in pixels, of the reconstruction residual these statistics were fitted
        with: the map's (``blur``) since map version 3, none before."""
        return self.blur if self.map_version >= BLURRED_BASELINES_MAP_VERSION else 0.0

    def with_quantile(self, quantile: float, rank: str) -> Normalizer:
        """The same held-out scores with another false-alarm quantile or rank (no retraining needed)."""
        if (quantile, rank) == (self.quantile, self.rank) or not self.scores:
            return self
        refit = Normalizer.fit(np.asarray(self.scores), quantile, self.residual_peak, self.map_quantiles, rank)
        # only the score bounds change; every other field (the map statistics, the other held-out
        # scores, what they are of) stays
        return dataclasses.replace(
            self, lo=refit.lo, hi=refit.hi, quantile=quantile, rank=rank, n_images=refit.n_images
        )

    def map_threshold(self, quantile: float) -> float:
        """The anomalous-map value that a ``quantile`` share of held-out normal pixels stay below."""
        if not self.map_quantiles:
            raise CavgaError("this run has no held-out map statistics (trained by an older cavga); retrain it")
        grid = np.linspace(0.0, 1.0, len(self.map_quantiles))
        return float(np.interp(quantile, grid, self.map_quantiles))

    def __call__(self, raw: Tensor) -> Tensor:
        span = max(self.hi - self.lo, 1e-12)
        return ((raw - self.lo) / (2 * span)).clamp(0.0, 1.0)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def held_out_quantile(scores: np.ndarray, quantile: float, rank: str) -> float:
    """The ``quantile`` of held-out normal scores that maps to 0.5 (module doc, "Which quantile"):
    "conformal", the k-th smallest with k = ceil((n + 1) quantile), at most n; "interpolated", numpy's."""
    if rank == "interpolated":
        return float(np.quantile(scores, quantile))
    n = len(scores)
    k = min(math.ceil(round((n + 1) * quantile, 9)), n)  # round: (n + 1) q = 20.000000000000004 is 20
    return float(np.sort(scores)[max(k, 1) - 1])


# The maps' version: 2 since A (CAVGA-u, direct) and A_ca (CAVGA-w) are read unclamped above the
# normal peak (cavga.attention.unsaturated_cam); statistics of an older version of such a map are
# refitted. 3 since every run's reconstruction residual is blurred as its map (infer.map_blur) and
# the AEs' maps honour infer.map_blur (auto: none). A run fitted before read those unblurred,
# whatever its config says, and keeps doing so (cavga.runfolder.saved_run, Normalizer.residual_blur).
# 4 since the blur of a padded run's maps (data.resize pad or center) stays within each image's
# content (cavga.attention.content_blur); such a run's older statistics are refitted.
UNCLAMPED_MAP_VERSION = 2
BLURRED_BASELINES_MAP_VERSION = 3
CONTENT_BLUR_MAP_VERSION = 4
MAP_VERSION = 4

# How many evenly spaced quantiles of the held-out map are stored: steps of 0.0001, so that
# infer.mask_quantile 0.9999 is a stored quantile, not an interpolation towards the maximum.
MAP_QUANTILE_LEVELS = 10001
