"""The whole inference path of a trained run as one forward-only module, ready to trace or export.

``InferenceGraph(image) -> (score, anomaly_map, mask, raw_score)`` for images (B, 3, S, S) in [0, 1]
(the run's resize already done): the encoder (with its own ImageNet normalisation for CAVGA-R), the
latent mean, the closed-form Grad-CAM (:mod:`.analytic`), its running-scale normalisation, 1 - A
(or A, unclamped; or A's departure either way from its normal level, held as a buffer) for CAVGA-u
and A_ca (unclamped; or 1 - A_cn) for CAVGA-w, averaged with the enlarged image's map and over
half-cell shifts where ``infer.enlarged_map`` and ``infer.shifted_map`` say so, bilinear upsampling
to S, the Gaussian blur of ``infer.map_blur``, the mask threshold, and the image score: CAVGA-u's
normalised reconstruction difference, CAVGA-w's anomalous probability, the map's peak
(``infer.image_score: map``) or the reconstruction BCE (``bce``).
It computes what :meth:`cavga.inference.Predictor.predict_batch` does, with no autograd.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..attention import (
    ENLARGEMENT,
    departure,
    enlarged_average,
    half_cell_average,
    image_map,
    normalise_cam,
    scale_free_cam,
    unsaturated_cam,
    upsample,
)
from ..config.resolve import map_blur
from ..image_scores import bce_score, map_peak, peak_mask, reconstruction_score, verdict_gate
from ..inference import Predictor
from ..map_choice import reads_direct, resolved_direction, resolved_enlarged, resolved_shifted
from .analytic import AnalyticGradCAM, score_kind


class InferenceGraph(nn.Module):
    """A Predictor's model, normaliser and thresholds, frozen into one module (eval mode)."""

    def __init__(self, predictor: Predictor):
        super().__init__()
        model = predictor.model.eval()
        cfg = predictor.cfg
        self.model = model
        self.cam = AnalyticGradCAM(model, score_kind(model, cfg.infer.weak_map))
        self.size = cfg.data.image_size
        self.weakly = cfg.model.weakly_supervised
        self.direct = reads_direct(cfg)  # the map is A or A_ca itself, not its complement 1 - A or 1 - A_cn
        # CAVGA-u two-sided: A's departure from its normal level at each pixel (cavga.normal_level), a buffer
        self.two_sided = resolved_direction(cfg) == "two_sided" and not cfg.model.weakly_supervised
        level = predictor.level if self.two_sided else None
        zeros = torch.zeros(self.size, self.size)
        self.register_buffer("level", zeros if level is None else level.detach().float().cpu())  # (S, S)
        scale = model.attention_scale()
        self.per_image = scale is None  # "image" normalisation, or no running peak recorded
        self.register_buffer("scale", torch.tensor(0.0 if scale is None else float(scale)))
        # the score's normaliser: the reconstruction score's (u), the calibrated probability's (w), or none
        norm = predictor.score_normalizer
        self.calibrated = norm is not None
        self.lo = float(norm.lo) if norm is not None else 0.0
        self.span = max(norm.hi - norm.lo, 1e-12) if norm is not None else 1.0
        self.mask_threshold = float(predictor.mask_threshold)
        self.mask_peak_fraction = float(predictor.mask_peak_fraction)  # each mask's level rises to its map's peak
        self.mask_gate = bool(predictor.mask_gate)  # infer.mask_gate: verdict empties a normal verdict's mask
        self.score_threshold = float(cfg.infer.score_threshold)
        self.image_score = cfg.infer.image_score  # "paper", "map" or "bce" (resolved by from_run)
        self.enlarged = resolved_enlarged(cfg)  # averaged with the enlarged image's map (infer.enlarged_map)
        self.shifted = resolved_shifted(cfg)
        self.blur = map_blur(cfg)  # Gaussian sigma of the upsampled map, pixels (0: none)
        self.half = 0  # half a cell of the map's grid, in pixels, fixed before any trace (shifted only)
        if self.shifted:
            with torch.no_grad():
                self.half = self.size // self._grid_map(torch.zeros(1, 3, self.size, self.size))[0].shape[-1] // 2

    def _map(self, image: Tensor) -> tuple[Tensor, Tensor]:
        """The anomalous map at z's grid (B, 1, h, w) and mu."""
        m = self.model
        cam, mu = self.cam(m.encode_features(image))  # (B, 1, h, w), (B, C, h, w) or (B, d)
        scale = None if self.per_image else self.scale
        if self.two_sided:  # (B, 1, h, w): A in the running peak's units, compared with its level in forward
            return scale_free_cam(cam, scale), mu
        # (B, 1, h, w): A or A_ca unclamped above the normal peak, or 1 - A or 1 - A_cn (clamped A, A_cn)
        return (unsaturated_cam(cam, scale) if self.direct else 1 - normalise_cam(cam, scale)), mu

    def _grid_map(self, image: Tensor) -> tuple[Tensor, Tensor]:
        """:meth:`_map`, averaged with the enlarged image's where ``infer.enlarged_map`` says so (B, 1, 2h, 2w)."""
        amap, mu = self._map(image)  # (B, 1, h, w)
        if self.enlarged:
            amap = enlarged_average(lambda v: self._map(v)[0], image, amap, ENLARGEMENT * self.size)
        return amap, mu

    def forward(self, image: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        m = self.model
        amap, mu = self._grid_map(image)  # (B, 1, h, w), or (B, 1, 2h, 2w) enlarged
        if self.shifted:  # infer.shifted_map
            amap = half_cell_average(lambda v: self._grid_map(v)[0], image, amap, self.half)  # (B, 1, S, S)
        if self.two_sided:
            amap = departure(upsample(amap, self.size), self.level)  # (B, 1, S, S)
        amap = image_map(amap, self.size, self.blur)  # (B, S, S), blurred where infer.map_blur says so
        if self.image_score == "map":
            raw = map_peak(amap)  # (B,)
        elif self.image_score == "bce":
            raw = bce_score(image, m.decode(mu))  # (B,)
        elif self.weakly:
            raw = torch.softmax(m.classifier(mu.flatten(1)), dim=1)[:, 1]  # (B,) C's p_anomalous
        else:
            raw = reconstruction_score(image, m.decode(mu))[1]  # (B,)
        score = ((raw - self.lo) / (2 * self.span)).clamp(0.0, 1.0) if self.calibrated else raw
        mask = peak_mask(amap, self.mask_threshold, self.mask_peak_fraction)  # (B, S, S)
        if self.mask_gate:
            mask = verdict_gate(mask, (score >= self.score_threshold).long())  # (B, S, S)
        return score, amap, mask, raw
