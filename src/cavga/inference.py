"""Inference (Sec. 3.1 and 3.2): image score and verdict, anomalous attention map, mask.

* CAVGA-u: the anomalous attention map is 1 - A (A: Grad-CAM of sum(mu) in the running scale,
  see :mod:`cavga.attention`; or A itself, unclamped, where validation finds the attention rising
  on defects: ``infer.attention_direction``), upsampled to the image; the image score is the mean absolute
  difference between the image and its reconstruction [48], normalised to [0, 1] (below), or, as
  ``infer.image_score`` says, the map's peak or the reconstruction BCE above its floor (:func:`bce_score`).
* CAVGA-w: the classifier C gives the verdict and the score (its anomalous probability, calibrated
  on held-out normals as below unless ``classifier_verdict`` is "probability"); the anomalous
  attention map is A_ca, the Grad-CAM of C's anomalous logit, upsampled.
* Both: the map is blurred after its upsampling (``infer.map_blur``, a Gaussian of 4 px by default;
  :func:`cavga.attention.image_map`). The mask is the map thresholded at ``mask_threshold`` (0.5 in
  the paper), or, with ``mask_quantile`` set, strictly above that quantile of the map over held-out
  normal pixels.
  Those pixels are counted at each held-out image's own resolution, as maps are scored and
  returned (:func:`native_map`): the map is upsampled to the image, never the mask shrunk.
  ``mask_peak_fraction`` r then raises each map's threshold t towards its own peak, to
  t + r max(peak - t, 0) (:func:`peak_mask`; decided with an auto quantile on painted defects).
  ``mask_gate`` ("verdict" by default) empties the mask of an image whose verdict is normal.

The image scores, their normaliser and the map statistics held out for thresholds are in
:mod:`cavga.image_scores`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from . import data as D
from .asked_settings import settings_in_effect, warn_edited_config
from .attention import content_blur, image_map
from .completion import check_finished
from .config import RunConfig, to_dict
from .config.resolve import map_blur
from .data.inputs import check_model_batch, model_input
from .errors import CavgaError
from .evidence import anomaly_evidence
from .fingerprint import check_run_folder
from .held_out import eval_loader, fit_normalizer  # noqa: F401 - eval_loader stays importable from here
from .image_scores import (
    CONTENT_BLUR_MAP_VERSION,
    FIXED_RESIDUAL_LEVEL,
    OWN_HELD_OUT,
    UNCLAMPED_MAP_VERSION,
    Normalizer,
    answer_mask,
    bce_score,
    level_above,
    map_peak,
    reconstruction_score,
    residual_mask_level,
)
from .map_choice import (
    AUTO_SETTINGS,
    reads_direct,
    reads_map_blur,
    resolve_auto_settings,
    resolved_direction,
    resolved_enlarged,
    resolved_shifted,
    resolved_weak_map,
)
from .networks import CAVGA, build_networks
from .normal_level import LEVEL_KEY
from .runfolder import RunData, saved_run
from .runtime import resolve_device

# the inference settings that change the anomaly map itself (not only how it is read)
MAP_SETTINGS = tuple(
    f"infer.{key}" for key in ("attention_direction", "weak_map", "shifted_map", "enlarged_map", "map_blur")
)


# what a refit of the map statistics replaces (the score normaliser itself stays)
REFITTED = (
    "residual_peak",
    "map_quantiles",
    "map_max",
    "map_min",
    "bce_scores",
    "weak_map",
    "direction",
    "map_version",
    "shifted",
    "enlarged",
    "blur",
)


class ThresholdForAnotherMap(UserWarning):
    """A run's mask threshold, chosen for its own map, is applied to a map changed by ``--set``."""


@dataclass
class Prediction:
    """The answer for one image."""

    path: str | None  # the file's path; None for an image given in memory (cavga.api)
    score: float  # normalised anomaly score in [0, 1]
    label: int  # verdict: 1 anomalous, 0 normal
    anomaly_map: np.ndarray  # (H, W) float32 in [0, 1]
    mask: np.ndarray  # (H, W) bool
    raw_score: float  # unnormalised score (reconstruction difference, or C's probability)

    @property
    def verdict(self) -> str:
        """The verdict as predictions.json writes it: "anomalous" or "normal"."""
        return "anomalous" if self.label else "normal"


@dataclass
class BatchPrediction:
    """Predictions for a batch, as tensors on the CPU at the model's resolution."""

    score: Tensor  # (B,)
    label: Tensor  # (B,) long
    anomaly_map: Tensor  # (B, S, S) in [0, 1]
    mask: Tensor  # (B, S, S) bool
    raw_score: Tensor  # (B,)
    reconstruction: Tensor  # (B, 3, S, S)
    # (B, S, S) mean |x - x_hat| over channels, blurred as the map (Normalizer.residual_blur): the
    # reconstruction baseline, read through the same post-processing as the map it is compared with
    residual_map: Tensor
    residual_score: Tensor  # (B,) the unblurred residual's mean over the content: the baseline's image score


class Predictor:
    """A trained model ready to answer: ``predict`` for images in memory or on disk (:mod:`cavga.api`),
    ``predict_batch`` for the model's input tensors."""

    def __init__(
        self,
        model: CAVGA,
        cfg: RunConfig,
        normalizer: Normalizer | None,
        device: torch.device,
        level: Tensor | None = None,
    ):
        """Settings still at "auto" count as the paper's here (``AUTO_SETTINGS``: 1 - A, the paper's
        image score, A_ca, the 0.99 mask quantile, no shifts); ``from_run`` resolves them as training decided.
        ``normalizer``'s map statistics must be of the map in use (``from_run`` refits them when
        they are not). ``level`` (S, S): the attention's normal level, which the two-sided map needs
        (:mod:`cavga.normal_level`)."""
        self.model = model.to(device).eval()
        self.cfg = cfg
        self.normalizer = normalizer
        self.device = device
        if not cfg.model.weakly_supervised and normalizer is None:
            raise CavgaError("this unsupervised model has no score normaliser (training did not finish)")
        self.mask_threshold = cfg.infer.mask_threshold
        self.has_reconstruction = True  # evaluate measures the residual baseline |x - x_hat| beside the model
        # that baseline's mask (threshold, peak fraction) on its scaled residual: from_run sets the
        # level training's end decided on painted defects, as for the map (cavga.mask_threshold)
        self.residual_level = FIXED_RESIDUAL_LEVEL
        self.requested_infer: dict | None = None  # from_run: the inference settings asked for, autos unresolved
        self._direction = resolved_direction(cfg)
        self.level = level  # the two-sided map's; anomaly_evidence names it where it is missing
        self._weak_map = resolved_weak_map(cfg)
        self._shifted = resolved_shifted(cfg)
        self._enlarged = resolved_enlarged(cfg)
        quantile, margin = cfg.infer.mask_quantile, cfg.infer.mask_margin
        if quantile is not None:
            quantile = AUTO_SETTINGS["mask_quantile"] if quantile == "auto" else quantile
            margin = AUTO_SETTINGS["mask_margin"] if margin == "auto" else margin
            self.mask_threshold = self.threshold_at_quantile(quantile, margin)
        fraction = cfg.infer.mask_peak_fraction  # each map's threshold raised towards its own peak
        self.mask_peak_fraction = float(AUTO_SETTINGS["mask_peak_fraction"] if fraction == "auto" else fraction)
        self.mask_min_area = float(cfg.infer.mask_min_area)  # masks drop smaller regions (cavga.min_area)
        self.mask_gate = cfg.infer.mask_gate == "verdict"  # an image judged normal shows no mask
        # CAVGA-w's probability -> score, as CAVGA-u's reconstruction score (None: the probability itself)
        self.classifier_normalizer = None
        if cfg.model.weakly_supervised and cfg.infer.classifier_verdict == "calibrated":
            if normalizer is None or not normalizer.classifier_scores:
                warnings.warn(
                    "this CAVGA-w run stored no held-out classifier probabilities (trained by an older cavga): "
                    "its verdict thresholds C's probability as is (infer.classifier_verdict=probability)",
                    stacklevel=2,
                )
            else:
                held_out = np.asarray(normalizer.classifier_scores)
                self.classifier_normalizer = Normalizer.fit(held_out, normalizer.quantile, 0.0, [], normalizer.rank)
        # infer.image_score "map" / "bce": the map's peak / the reconstruction BCE, normalised on the
        # held-out normals' own values of it
        self.image_score_normalizer = None
        if cfg.infer.image_score in OWN_HELD_OUT:
            key, what = OWN_HELD_OUT[cfg.infer.image_score]
            held = getattr(normalizer, key) if normalizer is not None else None
            if not held:
                raise CavgaError(
                    f"infer.image_score={cfg.infer.image_score} needs the held-out {what}, which this run lacks"
                )
            self.image_score_normalizer = Normalizer.fit(
                np.asarray(held), normalizer.quantile, 0.0, [], normalizer.rank
            )

    @property
    def score_normalizer(self) -> Normalizer | None:
        """What maps the raw score to [0, 1]: the map peaks' or BCEs' normaliser (``infer.image_score:
        map`` or ``bce``), CAVGA-u's reconstruction normaliser, CAVGA-w's calibration, or None."""
        if self.image_score_normalizer is not None:
            return self.image_score_normalizer
        return self.classifier_normalizer if self.cfg.model.weakly_supervised else self.normalizer

    @property
    def reads_two_sided(self) -> bool:
        """Whether the map is the attention's departure from its normal level (``two_sided``)."""
        return self._direction == "two_sided"

    @property
    def map_views(self) -> tuple[bool, bool]:
        """Whether the map averages half-cell shifts and the enlarged image, as resolved."""
        return self._shifted, self._enlarged

    def threshold_at_quantile(self, quantile: float, margin: float = 0.0) -> float:
        """The mask threshold that flags about 1 - ``quantile`` of the held-out normal pixels, raised
        by ``margin`` of the way from there to the map's ceiling 1 (``infer.mask_margin``)."""
        if self.normalizer is None:
            raise CavgaError("infer.mask_quantile needs held-out map statistics, which this run lacks")
        # The stored quantiles are of the map in use (from_run refits them when they are not).
        return level_above(self.normalizer.map_threshold(quantile), margin)

    @classmethod
    def from_run(
        cls, run_dir: str | Path, device: str = "auto", infer: list[str] | None = None, acting: tuple[str, ...] = ()
    ) -> Predictor:
        """Load a finished run; ``infer`` overrides inference settings (``"infer.mask_threshold=0.4"``); a
        decision-only one changed there is warned of unless the caller reads it itself (``acting``:
        :func:`cavga.asked_settings.settings_in_effect`)."""
        state, cfg = saved_run(run_dir, infer)
        check_finished(run_dir, state, cfg)  # before any decided setting is read: a run without its end has none
        requested = to_dict(cfg)["infer"]  # as saved and overridden, before the run's decisions fill in its autos
        from .mask_threshold import requantile
        from .runtime import CHECKPOINT, weights_of

        requantile(cfg, state)  # an auto quantile beside a margin or peak fraction set here, not at training
        resolve_auto_settings(cfg, state)  # as decided at the end of training (older runs: the paper's)
        ckpt = Path(run_dir) / CHECKPOINT
        try:  # the decided values, checked as the settings they stand for
            cfg.validate()
        except CavgaError as e:
            raise CavgaError(f"{ckpt}: as training decided it, {e}") from None
        check_run_folder(run_dir, state)  # config.yaml and split.json belong to this checkpoint
        warn_edited_config(run_dir, state)  # config.yaml's infer edited: the checkpoint's is read
        requested = settings_in_effect(run_dir, state, requested, acting)  # what the answers stand for
        device = resolve_device(device)
        if cfg.model.is_baseline:  # AE-L2, AE-SSIM, PatchCore: same Prediction, their own maps and scores
            from .baselines.scoring import BaselinePredictor, evidence

            with weights_of(ckpt):
                predictor = BaselinePredictor.from_state(state, cfg, device)
            if reads_map_blur(cfg) and predictor.normalizer.blur != map_blur(cfg):  # an AE's map blurred otherwise
                forward = partial(evidence, predictor.model, cfg)  # the baseline's own forward pass
                _refit_map_statistics(predictor.normalizer, run_dir, state, cfg, infer, None, device, forward)
            predictor.residual_level = residual_mask_level(state.get("residual_mask"), predictor.normalizer)
            predictor.requested_infer = requested
            return predictor
        model, _ = build_networks(cfg.model, cfg.data.image_size, from_checkpoint=True)
        with weights_of(ckpt):
            model.load_state_dict(state["model"])
        norm, level = state.get("normalizer"), state.get(LEVEL_KEY)
        if resolved_direction(cfg) == "two_sided" and level is None:
            raise CavgaError(
                f"{run_dir}: infer.attention_direction two_sided needs the attention's normal level, which this run "
                f"(trained before cavga stored it) lacks; `cavga redecide {run_dir} NEW_DIR "
                "--set infer.attention_direction=two_sided` fits it on the held-out normals"
            )
        normalizer = (
            Normalizer(**norm).with_quantile(cfg.infer.normalizer_quantile, cfg.infer.normalizer_rank) if norm else None
        )
        stale = normalizer is not None and (
            # trained before infer.image_score map or bce
            (cfg.infer.image_score in OWN_HELD_OUT and not getattr(normalizer, OWN_HELD_OUT[cfg.infer.image_score][0]))
            or (cfg.model.weakly_supervised and normalizer.weak_map != cfg.infer.weak_map)  # the other map
            or normalizer.direction != resolved_direction(cfg)  # A, or statistics from before A had its own
            or (normalizer.map_version < UNCLAMPED_MAP_VERSION and reads_direct(cfg))  # A or A_ca, clamped then
            or normalizer.shifted != resolved_shifted(cfg)  # the map with or without half-cell shifts
            or normalizer.enlarged != resolved_enlarged(cfg)  # or the enlarged image's map
            or normalizer.blur != map_blur(cfg)  # blurred otherwise
            or (normalizer.map_version < CONTENT_BLUR_MAP_VERSION and cfg.data.resize != "stretch" and normalizer.blur)
        )  # the last: a padded run's maps blurred across its padding then
        if stale:  # the map statistics of the map in use, from the same held-out normals, computed now
            _refit_map_statistics(normalizer, run_dir, state, cfg, infer, model.to(device), device, level=level)
        predictor = cls(model, cfg, normalizer, device, level)
        predictor.residual_level = residual_mask_level(state.get("residual_mask"), normalizer)  # refitted: fixed
        predictor.requested_infer = requested
        return predictor

    def predict_batch(self, x: Tensor, valid: Tensor | None = None, level: Tensor | None = None) -> BatchPrediction:
        """Predict a batch (B, 3, S, S) as loaded; ``valid`` (B, 1, S, S) marks content when
        ``data.resize`` is pad or center (a Batch's ``valid``), so the score ignores the padding.
        ``level`` (S, S): a two-sided map's normal level for this batch instead of the run's own."""
        check_model_batch(x, self.cfg.data.image_size)
        x = x.to(self.device)
        valid = None if valid is None else valid.to(self.device)
        size = self.cfg.data.image_size
        level = self.level if level is None else level  # (S, S), the two-sided map's
        read = (self._direction, self._weak_map, self._shifted, self._enlarged, level)
        amap, x_hat, p_anomalous = anomaly_evidence(self.model, x, *read)
        amap = image_map(amap, size, map_blur(self.cfg), valid)  # (B, S, S), blurred within the content
        x_hat = D.paste_padding(x_hat, x, valid)  # (B, 3, S, S)
        residual, recon_score = reconstruction_score(x, x_hat, valid)  # (B, S, S), (B,)
        raw = recon_score if p_anomalous is None else p_anomalous  # (B,)
        if self.cfg.infer.image_score == "map":
            raw = map_peak(amap, valid)  # (B,)
        elif self.cfg.infer.image_score == "bce":
            raw = bce_score(x, x_hat, valid)  # (B,)
        norm = self.score_normalizer  # never None for CAVGA-u (checked above)
        score = raw if norm is None else norm(raw)
        label = (score >= self.cfg.infer.score_threshold).long()
        return BatchPrediction(
            score=score.cpu(),
            label=label.cpu(),
            anomaly_map=amap.cpu(),
            mask=answer_mask(self, amap, label, valid).cpu(),
            raw_score=raw.cpu(),
            reconstruction=x_hat.cpu(),
            residual_map=content_blur(residual, self.residual_blur, valid).cpu(),  # (B, S, S)
            residual_score=recon_score.cpu(),
        )

    @property
    def residual_blur(self) -> float:
        """The blur of the reconstruction residual: as its held-out statistics were fitted (the map's
        since map version 3), the map's where there are none."""
        return self.normalizer.residual_blur if self.normalizer else map_blur(self.cfg)

    def predict(self, images):
        """:func:`cavga.api.predict_images`: one Prediction for a path, PIL image, numpy array or tensor;
        a list for a list. Maps and masks come back at each image's own size."""
        from .api import predict_images

        return predict_images(self, images)

    def predict_paths(self, paths: list[str | Path]) -> list[Prediction]:
        """Predict image files; maps and masks come back at each image's own size."""
        return self.predict(list(paths))

    def load_inputs(self, paths: list[str]) -> tuple[Tensor, Tensor | None, list[tuple[int, int]]]:
        """Image files as the model's input (B, 3, S, S), their content maps (B, 1, S, S) when
        ``data.resize`` is pad or center (else None), and each image's own (H, W)."""
        x, valid, sizes, _ = model_input(paths, self.cfg.data.image_size, self.cfg.data.resize)
        return x, valid, sizes


def _refit_map_statistics(
    normalizer: Normalizer,
    run_dir,
    state,
    cfg: RunConfig,
    infer,
    model: CAVGA | None,
    device: torch.device,
    evidence=None,
    level: Tensor | None = None,
) -> None:
    """Replace ``normalizer``'s map statistics by those of the map in use (changed by ``infer``), fitted
    now on the run's held-out normals by ``model`` (``level``: the attention's normal level), or by
    ``evidence`` (a baseline's forward pass, as :func:`fit_normalizer` takes it); warn where the run's
    mask threshold was chosen for its own map."""
    changed = [item for item in infer or [] if item.split("=")[0] in MAP_SETTINGS]
    if state.get("mask_quantile") and changed:  # the threshold was chosen for the run's own map
        flags = " ".join(f"--set {item}" for item in changed)
        warnings.warn(
            f"{run_dir}: its mask threshold was chosen on painted held-out defects for the map it was "
            f"trained with, not for this one; `cavga redecide {run_dir} NEW_DIR {flags}` chooses it "
            "again for the new map",
            ThresholdForAnotherMap,
            stacklevel=3,
        )
    run_data = RunData.load(run_dir)
    try:
        refit = fit_normalizer(model, run_data.val or run_data.train, cfg, device, evidence, level)
    except CavgaError as e:  # the data set moved or was deleted since training
        raise CavgaError(
            f"{run_dir}: the map settings asked for ({', '.join(changed) or 'another map'}) need the run's held-out "
            f"normal images to refit the map's statistics, and one cannot be read: {e}"
        ) from None
    for key in REFITTED:
        setattr(normalizer, key, refit[key])
