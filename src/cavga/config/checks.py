"""The checks a run's configuration must pass (:meth:`cavga.config.RunConfig.validate`): each value
a typo would make silently wrong is refused in one line that names the key."""

from __future__ import annotations

import math
from dataclasses import fields

from ..errors import CavgaError
from .schema import (
    ATTENTION_DIRECTIONS,
    AUGMENTS,
    BACKBONES,
    CAVGA_IMAGE_SCORES,
    DIRECTION_CANDIDATES,
    DISTILL_SCHEDULES,
    ENCODER_INITS,
    ENCODER_STRIDES,
    IMAGE_SCORES,
    LAYOUTS,
    MASK_GATES,
    MODELS,
    NORMALIZER_RANKS,
    RESIZE_MODES,
    WEAK_MAPS,
    DistillConfig,
    ModelConfig,
    RunConfig,
)


def check_run_config(cfg: RunConfig) -> None:
    """Raise :class:`CavgaError` naming the first key whose value is out of its range or choices."""
    if cfg.data.layout not in LAYOUTS:
        raise CavgaError(f"data.layout: unknown layout {cfg.data.layout!r} (choose from {', '.join(LAYOUTS)})")
    if cfg.model.variant not in MODELS:
        raise CavgaError(f"model.variant: unknown model {cfg.model.variant!r} (choose from {', '.join(MODELS)})")
    if cfg.model.attention_norm not in ("running", "image"):
        raise CavgaError(f"model.attention_norm: {cfg.model.attention_norm!r} is not 'running' or 'image'")
    from ..attention import ATTENTION_SCORES

    if cfg.model.attention_score not in ("auto", *ATTENTION_SCORES):
        raise CavgaError(
            f"model.attention_score: {cfg.model.attention_score!r} is not auto or one of " + ", ".join(ATTENTION_SCORES)
        )
    if cfg.infer.attention_direction not in ATTENTION_DIRECTIONS:
        raise CavgaError(
            f"infer.attention_direction: {cfg.infer.attention_direction!r} is not one of "
            + ", ".join(ATTENTION_DIRECTIONS)
        )
    if cfg.infer.direction_candidates not in DIRECTION_CANDIDATES:
        raise CavgaError(
            f"infer.direction_candidates: {cfg.infer.direction_candidates!r} is not one of "
            + ", ".join(DIRECTION_CANDIDATES)
        )
    in_range("infer.direction_fade", cfg.infer.direction_fade, 0.0, 1.0, low_open=True)
    if cfg.infer.classifier_verdict not in ("calibrated", "probability"):
        raise CavgaError(
            f"infer.classifier_verdict: {cfg.infer.classifier_verdict!r} is not 'calibrated' or 'probability'"
        )
    if cfg.infer.normalizer_rank not in NORMALIZER_RANKS:
        raise CavgaError(
            f"infer.normalizer_rank: {cfg.infer.normalizer_rank!r} is not one of {', '.join(NORMALIZER_RANKS)}"
        )
    if cfg.infer.image_score not in IMAGE_SCORES:
        raise CavgaError(f"infer.image_score: {cfg.infer.image_score!r} is not one of {', '.join(IMAGE_SCORES)}")
    if cfg.infer.weak_map not in WEAK_MAPS:
        raise CavgaError(f"infer.weak_map: {cfg.infer.weak_map!r} is not one of {', '.join(WEAK_MAPS)}")
    if cfg.infer.image_score in CAVGA_IMAGE_SCORES and cfg.model.is_baseline:
        raise CavgaError(
            f"infer.image_score: {cfg.infer.image_score} is for the CAVGA variants, not {cfg.model.variant}"
        )
    if cfg.distill.share not in (True, False, "auto"):
        raise CavgaError(f"distill.share: {cfg.distill.share!r} is not true, false or auto")
    if cfg.infer.shifted_map not in (True, False, "auto"):
        raise CavgaError(f"infer.shifted_map: {cfg.infer.shifted_map!r} is not true, false or auto")
    if cfg.infer.shifted_map is True and cfg.model.is_baseline:
        raise CavgaError(f"infer.shifted_map is for the CAVGA variants' attention, not {cfg.model.variant}")
    if cfg.infer.enlarged_map not in (True, False, "auto"):
        raise CavgaError(f"infer.enlarged_map: {cfg.infer.enlarged_map!r} is not true, false or auto")
    if cfg.infer.enlarged_map is True and not cfg.model.reads_any_size:
        raise CavgaError(
            f"infer.enlarged_map needs CAVGA-u with a convolutional z (CAVGA-Du, CAVGA-Ru), not {cfg.model.label}: "
            "its classifier or flattened z reads z of the training size only"
        )
    if cfg.infer.map_blur != "auto":
        if isinstance(cfg.infer.map_blur, str):
            raise CavgaError(f"infer.map_blur: {cfg.infer.map_blur!r} is neither auto nor a number of pixels")
        in_range("infer.map_blur", cfg.infer.map_blur, 0.0, float(cfg.data.image_size))  # pixels at the model's size
    in_range("infer.mask_copies", cfg.infer.mask_copies, 1, 64)
    for key in ("mask_fade", "score_fade"):  # the painted defects' strength, U(fade, 1)
        fade = getattr(cfg.infer, key)
        if fade != "auto":
            if isinstance(fade, str):
                raise CavgaError(f"infer.{key}: {fade!r} is neither auto nor a number in (0, 1]")
            in_range(f"infer.{key}", fade, 0.0, 1.0, low_open=True)
    if cfg.model.attention_layer != "auto":
        if isinstance(cfg.model.attention_layer, str):
            raise CavgaError(f"model.attention_layer: {cfg.model.attention_layer!r} is neither auto nor 0..3")
        if not 0 <= cfg.model.attention_layer <= 3:
            raise CavgaError(f"model.attention_layer: {cfg.model.attention_layer} is outside 0..3")
    if cfg.loss.reduction not in ("sum", "mean"):
        raise CavgaError(f"loss.reduction: {cfg.loss.reduction!r} is not 'sum' or 'mean'")
    if cfg.model.backbone not in BACKBONES:
        raise CavgaError(
            f"model.backbone: unknown backbone {cfg.model.backbone!r} (choose from {', '.join(BACKBONES)})"
        )
    if cfg.model.encoder_stride not in ENCODER_STRIDES:
        strides = ", ".join(map(str, ENCODER_STRIDES))
        raise CavgaError(f"model.encoder_stride: {cfg.model.encoder_stride} is not one of {strides}")
    if cfg.model.freeze_encoder not in (True, False, "auto"):
        raise CavgaError(f"model.freeze_encoder: {cfg.model.freeze_encoder!r} is not true, false or auto")
    _check_encoder_start(cfg.model, cfg.distill)
    if cfg.model.latent_stride not in (4, 8, 16):
        raise CavgaError(f"model.latent_stride: {cfg.model.latent_stride} is not 4, 8 or 16")
    if cfg.train.augment not in AUGMENTS:
        raise CavgaError(f"train.augment: {cfg.train.augment!r} is not one of {', '.join(AUGMENTS)}")
    if cfg.data.resize not in RESIZE_MODES:
        raise CavgaError(f"data.resize: {cfg.data.resize!r} is not one of {', '.join(RESIZE_MODES)}")
    if cfg.data.resize != "stretch" and cfg.model.is_baseline:
        variant = cfg.model.variant
        raise CavgaError(f"data.resize: {cfg.data.resize} is for the CAVGA variants; {variant} takes stretched inputs")
    size = cfg.data.image_size
    if size < 32 or size & (size - 1):
        raise CavgaError(f"data.image_size: {size} is not a power of two >= 32")
    in_range("data.train_fraction", cfg.data.train_fraction, 0.0, 1.0, low_open=True)
    in_range("data.anomalous_fraction", cfg.data.anomalous_fraction, 0.0, 1.0)
    in_range("data.val_fraction", cfg.data.val_fraction, 0.0, 1.0)
    if isinstance(cfg.infer.mask_quantile, str) and cfg.infer.mask_quantile != "auto":
        q = cfg.infer.mask_quantile
        raise CavgaError(f"infer.mask_quantile: {q!r} is not a number in (0, 1], auto or null")
    for name in ("mask_margin", "mask_peak_fraction"):
        v = getattr(cfg.infer, name)
        if isinstance(v, str):
            if v != "auto":
                raise CavgaError(f"infer.{name}: {v!r} is not a number in [0, 1) or auto")
        else:
            in_range(f"infer.{name}", v, 0.0, 1.0, high_open=True)
    in_range("infer.mask_min_area", cfg.infer.mask_min_area, 0.0, 1.0, high_open=True)
    if cfg.infer.mask_gate not in MASK_GATES:
        raise CavgaError(f"infer.mask_gate: {cfg.infer.mask_gate!r} is not one of {', '.join(MASK_GATES)}")
    for name in ("mask_threshold", "mask_quantile", "score_threshold", "normalizer_quantile"):
        v = getattr(cfg.infer, name)
        if v is not None and not isinstance(v, str):
            in_range(f"infer.{name}", v, 0.0, 1.0, low_open=True)
    for f in fields(cfg.loss):
        if f.name.startswith("w_"):
            in_range(f"loss.{f.name}", getattr(cfg.loss, f.name), 0.0, math.inf)
    for name, v in (
        ("train.epochs", cfg.train.epochs),
        ("train.batch_size", cfg.train.batch_size),
        ("train.checkpoint_every", cfg.train.checkpoint_every),
        ("infer.batch_size", cfg.infer.batch_size),
        ("model.base_channels", cfg.model.base_channels),
        ("model.latent_channels", cfg.model.latent_channels),
        ("model.flat_latent_dim", cfg.model.flat_latent_dim),
        ("model.disc_channels", 1 if cfg.model.disc_channels is None else cfg.model.disc_channels),
    ):
        if v < 1:
            raise CavgaError(f"{name}: {v} must be >= 1")
    if cfg.train.cache_mb < 0:
        raise CavgaError(f"train.cache_mb: {cfg.train.cache_mb} must be >= 0")
    if cfg.train.num_workers < 0:
        raise CavgaError(f"train.num_workers: {cfg.train.num_workers} must be >= 0")
    every = cfg.train.validate_every
    if every != "auto" and (isinstance(every, str) or every < 0):
        raise CavgaError(f"train.validate_every: {every!r} is not a number of epochs >= 0 or auto")
    restarts = cfg.train.restarts
    if restarts != "auto" and (isinstance(restarts, str) or restarts < 1):
        raise CavgaError(f"train.restarts: {restarts!r} is not a number of seeds >= 1 or auto")
    if restarts not in ("auto", 1) and cfg.train.validate_every == 0:
        raise CavgaError(
            f"train.restarts: the {restarts} seeds are compared at the first painted check; set "
            "train.validate_every above 0, or train.restarts to 1 for a single run"
        )
    patience = cfg.train.patience
    if patience != "auto" and (isinstance(patience, str) or patience < 0):
        raise CavgaError(f"train.patience: {patience!r} is not a number of painted checks >= 0 or auto")
    if patience not in ("auto", 0) and cfg.train.validate_every == 0:
        raise CavgaError("train.patience: it counts painted checks; set train.validate_every")
    in_range("train.lr", cfg.train.lr, 0.0, math.inf, low_open=True)
    in_range("train.beta1", cfg.train.beta1, 0.0, 1.0, high_open=True)
    in_range("train.beta2", cfg.train.beta2, 0.0, 1.0, high_open=True)
    in_range("model.attention_momentum", cfg.model.attention_momentum, 0.0, 1.0, low_open=True)
    b = cfg.baseline
    if b.ae_input_size < 32 or b.ae_input_size & (b.ae_input_size - 1):
        raise CavgaError(f"baseline.ae_input_size: {b.ae_input_size} is not a power of two >= 32")
    if b.ae_latent_dim < 1 or b.coreset_projection < 0:
        raise CavgaError("baseline.ae_latent_dim must be >= 1 and baseline.coreset_projection >= 0")
    if b.ssim_window < 3 or b.ssim_window % 2 == 0:
        raise CavgaError(f"baseline.ssim_window: {b.ssim_window} is not an odd number >= 3")
    in_range("baseline.coreset_fraction", b.coreset_fraction, 0.0, 1.0, low_open=True)
    in_range("baseline.ae_weight_decay", b.ae_weight_decay, 0.0, math.inf)
    in_range("baseline.blur_sigma", b.blur_sigma, 0.0, math.inf)


def _check_encoder_start(m: ModelConfig, d: DistillConfig) -> None:
    """``model.encoder_init`` and ``freeze_encoder`` fit the architecture; the distill section is sound."""
    if m.encoder_init not in ENCODER_INITS:
        raise CavgaError(f"model.encoder_init: {m.encoder_init!r} is not one of {', '.join(ENCODER_INITS)}")
    if m.encoder_init == "distill" and m.arch != "D":
        start = f"{m.variant} has no pretrained start"
        start = "CAVGA-R starts from model.backbone_weights" if m.arch == "R" else start
        raise CavgaError(f"model.encoder_init: distill is for CAVGA-D; {start}")
    if m.freeze_encoder is True and m.arch == "D" and m.encoder_init == "dcgan":
        raise CavgaError("model.freeze_encoder: CAVGA-D's encoder can be frozen only after model.encoder_init: distill")
    if m.arch != "D" or m.encoder_init == "dcgan":  # the distill section is read only where CAVGA-D distils
        return
    if d.augment not in AUGMENTS:
        raise CavgaError(f"distill.augment: {d.augment!r} is not one of {', '.join(AUGMENTS)}")
    if d.epochs < 1:
        raise CavgaError(f"distill.epochs: {d.epochs} must be >= 1")
    in_range("distill.lr", d.lr, 0.0, math.inf, low_open=True)
    in_range("distill.cutpaste", d.cutpaste, 0.0, 1.0)
    if d.schedule not in DISTILL_SCHEDULES:
        raise CavgaError(f"distill.schedule: {d.schedule!r} is not one of {', '.join(DISTILL_SCHEDULES)}")


def in_range(name: str, v: float, low: float, high: float, low_open: bool = False, high_open: bool = False) -> None:
    """``v`` is a finite number (inf allowed only as an open upper bound) in the interval; else one line."""
    ok = (v > low if low_open else v >= low) and (v < high if high_open or math.isinf(high) else v <= high)
    if not ok or math.isnan(v):
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open or math.isinf(high) else ']'}"
        raise CavgaError(f"{name}: {v} is outside {interval}")
