"""Anomaly maps and image scores of the baselines, and the Predictor that serves them.

``evidence(model, cfg, x)`` is the one place a baseline turns images into (map, raw score,
reconstruction); the threshold fitting (:func:`cavga.held_out.fit_normalizer`), evaluation and
predict all go through it, via :class:`BaselinePredictor`, exactly as they go through CAVGA.

Image scores: the AEs take the mean of their map (the per-image MSE for AE-L2, the mean SSIM
residual for AE-SSIM), as CAVGA-u scores the mean reconstruction residual; PatchCore takes the
maximum of its (blurred) distance map, as PatchCore does.

Maps: an AE's residual map is upsampled to the run's image size and blurred by ``infer.map_blur``,
the same post-processing as CAVGA's maps; its ``auto`` is no blur for the baselines (the rule of
docs/baselines.md, "The AEs' maps"). An AE fitted before session 57 read its maps unblurred and keeps
its numbers (:func:`cavga.runfolder.saved_run`). PatchCore's distance map has its own blur
(``baseline.blur_sigma``).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ..attention import gaussian_blur, image_map
from ..config import RunConfig
from ..config.resolve import map_blur
from ..data.inputs import check_model_batch
from ..errors import CavgaError
from ..image_scores import Normalizer, answer_mask, reconstruction_score
from ..inference import BatchPrediction, Predictor
from .ae import ConvAutoencoder, ae_map
from .patchcore import PatchCore

Evidence = tuple[Tensor, Tensor, Tensor | None]  # map (B, S, S) in [0, 1], raw score (B,), x_hat (B, 3, S, S) or None


def build_baseline(cfg: RunConfig, from_checkpoint: bool = False) -> torch.nn.Module:
    """The untrained network (AE) or the empty PatchCore (its encoder pretrained unless ``from_checkpoint``)."""
    b = cfg.baseline
    if cfg.model.variant == "PatchCore":
        if from_checkpoint:  # the checkpoint holds the encoder's weights
            return PatchCore(cfg.data.image_size, b.blur_sigma, "none", allow_random_init=True)
        return PatchCore(cfg.data.image_size, b.blur_sigma, cfg.model.backbone_weights, cfg.train.allow_random_init)
    return ConvAutoencoder(b.ae_input_size, b.ae_latent_dim)


def load_baseline(state: dict[str, Any], cfg: RunConfig) -> torch.nn.Module:
    """The trained (AE) or fitted (PatchCore) baseline of a checkpoint's ``state``."""
    model = build_baseline(cfg, from_checkpoint=True)
    if isinstance(model, PatchCore):
        bank = state["model"].get("bank")
        if not isinstance(bank, Tensor) or bank.ndim != 2:  # load_state_dict would name the key; this sizes it
            raise RuntimeError("Error(s) in loading state_dict for PatchCore:\n\tno memory bank (a 2-D tensor 'bank')")
        model.bank = torch.empty_like(bank)  # (M, 152): the bank's saved size
    model.load_state_dict(state["model"])
    return model


def to_ae_size(x: Tensor, size: int) -> Tensor:
    """Images (B, 3, S, S) resized to the AE's input size (area-averaged when shrinking)."""
    if x.shape[-1] == size:
        return x
    mode = "area" if x.shape[-1] > size else "bilinear"
    return F.interpolate(x, size=(size, size), mode=mode, **({} if mode == "area" else {"align_corners": False}))


@torch.no_grad()
def evidence(model: torch.nn.Module, cfg: RunConfig, x: Tensor) -> Evidence:
    """A baseline's anomaly map at the run's image size, raw image score and reconstruction."""
    model.eval()
    size = cfg.data.image_size
    if isinstance(model, PatchCore):
        d = model.distance_map(x)  # (B, S, S) blurred 1-NN distances
        return model.squash(d), d.flatten(1).amax(dim=1), None
    small = to_ae_size(x, model.image_size)  # (B, 3, s, s)
    x_hat = model(small).clamp(0, 1)  # (B, 3, s, s): the image range
    amap = ae_map(cfg.model.variant, small, x_hat, cfg.baseline.ssim_window)  # (B, s, s)
    raw = amap.flatten(1).mean(dim=1)  # (B,): of the map as the loss sees it, unblurred
    amap = image_map(amap[:, None], size, map_blur(cfg))  # (B, S, S): upsampled, blurred if asked, clamped
    recon = F.interpolate(x_hat, size=(size, size), mode="bilinear", align_corners=False)  # (B, 3, S, S)
    return amap, raw, recon


class BaselinePredictor(Predictor):
    """A :class:`~cavga.inference.Predictor` for a baseline: same thresholds, same Prediction."""

    def __init__(self, model: torch.nn.Module, cfg: RunConfig, normalizer: Normalizer | None, device: torch.device):
        super().__init__(model, cfg, normalizer, device)
        self.has_reconstruction = not isinstance(model, PatchCore)

    @classmethod
    def from_state(cls, state: dict[str, Any], cfg: RunConfig, device: torch.device) -> BaselinePredictor:
        if state.get("normalizer") is None:
            raise CavgaError(f"{cfg.model.variant}: this run has not finished fitting; finish it with --resume")
        model = load_baseline(state, cfg)
        normalizer = Normalizer(**state["normalizer"]).with_quantile(
            cfg.infer.normalizer_quantile, cfg.infer.normalizer_rank
        )
        return cls(model, cfg, normalizer, device)

    def predict_batch(self, x: Tensor, valid: Tensor | None = None) -> BatchPrediction:
        """As :meth:`Predictor.predict_batch`; baselines take square inputs only (``valid`` is None)."""
        check_model_batch(x, self.cfg.data.image_size)
        x = x.to(self.device)
        amap, raw, x_hat = evidence(self.model, self.cfg, x)  # (B, S, S), (B,), (B, 3, S, S) | None
        recon = x if x_hat is None else x_hat
        residual, residual_score = reconstruction_score(x, recon)  # (B, S, S), (B,); zero for PatchCore
        score = self.normalizer(raw)
        label = (score >= self.cfg.infer.score_threshold).long()  # (B,)
        return BatchPrediction(
            score=score.cpu(),
            label=label.cpu(),
            anomaly_map=amap.cpu(),
            mask=answer_mask(self, amap, label).cpu(),
            raw_score=raw.cpu(),
            reconstruction=recon.cpu(),
            residual_map=gaussian_blur(residual, self.residual_blur).cpu(),  # blurred as CAVGA's
            residual_score=residual_score.cpu(),
        )
