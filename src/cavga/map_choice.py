"""Which map and score a run reads: the inference settings training decides at its end ("auto",
:mod:`cavga.decisions`), and what each resolves to before, after and without that decision."""

from __future__ import annotations

from typing import Any

from .config import RunConfig
from .config.resolve import map_blur

# The inference settings training may leave at "auto" (decided on painted held-out defects at its
# end, cavga.painted_decisions.decide_on_painted) and what "auto" means for runs trained before each existed
# (mask_quantile: the default before "auto" existed)
AUTO_SETTINGS = {
    "attention_direction": "inverse",
    "image_score": "paper",
    "weak_map": "anomalous",
    "mask_quantile": 0.99,
    "mask_margin": 0.0,
    "mask_peak_fraction": 0.0,
    "shifted_map": False,
    "enlarged_map": False,
}


def resolve_auto_settings(cfg: RunConfig, decisions: dict[str, Any]) -> None:
    """Set each inference setting still at "auto" in ``cfg`` as ``decisions`` (a checkpoint, or
    training's own decisions: ``{key: {key: value, ...}}``) hold it, else to its ``AUTO_SETTINGS``
    value."""
    for key, fallback in AUTO_SETTINGS.items():
        if getattr(cfg.infer, key) == "auto":
            setattr(cfg.infer, key, (decisions.get(key) or {}).get(key, fallback))


def resolved_shifted(cfg: RunConfig) -> bool:
    """Whether the map is averaged over half-cell shifts (``infer.shifted_map``; "auto" not yet decided: no)."""
    return cfg.infer.shifted_map is True


def resolved_enlarged(cfg: RunConfig) -> bool:
    """Whether the map is averaged with the enlarged image's (``infer.enlarged_map``; "auto" not yet decided: no)."""
    return cfg.infer.enlarged_map is True


def map_settings(cfg: RunConfig) -> dict[str, Any]:
    """The settings that make a run's anomaly map and image score, as resolved from "auto" at
    training's end, for ``metrics.json`` and ``validation.json`` (None where a model has no such choice)."""
    return {
        # CAVGA-u: "inverse" (1 - A), "direct" (A) or "two_sided" (A's departure from its normal level)
        "attention_direction": cfg.infer.attention_direction if cfg.model.has_attention_direction else None,
        "image_score": cfg.infer.image_score,
        "weak_map": cfg.infer.weak_map if cfg.model.weakly_supervised else None,  # CAVGA-w: A_ca or 1 - A_cn
        "shifted_map": None if cfg.model.is_baseline else resolved_shifted(cfg),  # averaged over half-cell shifts
        # averaged with the map of the image enlarged twofold (CAVGA-u)
        "enlarged_map": resolved_enlarged(cfg) if cfg.model.has_attention_direction else None,
        "map_blur": map_blur(cfg) if reads_map_blur(cfg) else None,  # Gaussian sigma, pixels (0: none)
    }


def reads_map_blur(cfg: RunConfig) -> bool:
    """Whether ``infer.map_blur`` applies to the run's map: CAVGA's and the AE baselines' (whose ``auto``
    is no blur); not the PatchCore-like reference's, blurred by its own ``baseline.blur_sigma``."""
    return cfg.model.variant != "PatchCore"


def resolved_weak_map(cfg: RunConfig) -> str:
    """CAVGA-w's map as ``infer.weak_map`` says; "auto" not yet decided counts as the paper's A_ca."""
    return "anomalous" if cfg.infer.weak_map == "auto" else cfg.infer.weak_map


def resolved_direction(cfg: RunConfig) -> str:
    """CAVGA-u's map as ``infer.attention_direction`` says ("auto" not yet decided counts as the
    paper's 1 - A); "inverse" for the models it does not apply to."""
    if cfg.model.has_attention_direction and cfg.infer.attention_direction in ("direct", "two_sided"):
        return cfg.infer.attention_direction
    return "inverse"


def reads_direct(cfg: RunConfig) -> bool:
    """Whether the map in use is a Grad-CAM read the direct way (CAVGA-u's A, CAVGA-w's A_ca), its
    values above the normal peak unclamped, rather than the complement of one (1 - A, 1 - A_cn)."""
    if cfg.model.weakly_supervised:
        return resolved_weak_map(cfg) == "anomalous"
    return resolved_direction(cfg) == "direct"
