"""One dataclass per component, with the paper's values as defaults.

A run's configuration is a :class:`RunConfig` (:mod:`.schema`: the sections and their defaults;
:mod:`.checks`: what each value must satisfy); it loads from YAML (``load_config``), takes
``section.key=value`` overrides (``apply_overrides``), rejects unknown keys, and is saved beside
every run as ``config.yaml`` (``save_config``) (:mod:`.io`).
"""

from .io import ADDED, apply_overrides, from_dict, load_config, old_defaults, save_config, to_dict
from .resolve import PretrainedStartMissing, resolved, teacher_available
from .schema import (
    AE_BASELINES,
    ATTENTION_DIRECTIONS,
    AUGMENTS,
    BACKBONE_NAMES,
    BACKBONES,
    BASELINES,
    CAVGA_IMAGE_SCORES,
    DEMO_SETTINGS,
    DEMO_VARIANT_SETTINGS,
    DIRECTION_CANDIDATES,
    ENCODER_INITS,
    ENCODER_STRIDES,
    IMAGE_SCORES,
    LAYOUTS,
    MODELS,
    NORMALIZER_RANKS,
    RESIZE_MODES,
    VARIANTS,
    WEAK_MAPS,
    BaselineConfig,
    DataConfig,
    DistillConfig,
    InferConfig,
    LossConfig,
    ModelConfig,
    RunConfig,
    TrainConfig,
)

__all__ = [
    "ADDED",
    "ATTENTION_DIRECTIONS",
    "DIRECTION_CANDIDATES",
    "AUGMENTS",
    "BACKBONE_NAMES",
    "BACKBONES",
    "AE_BASELINES",
    "BASELINES",
    "CAVGA_IMAGE_SCORES",
    "DEMO_SETTINGS",
    "DEMO_VARIANT_SETTINGS",
    "ENCODER_INITS",
    "ENCODER_STRIDES",
    "IMAGE_SCORES",
    "NORMALIZER_RANKS",
    "LAYOUTS",
    "MODELS",
    "RESIZE_MODES",
    "VARIANTS",
    "WEAK_MAPS",
    "BaselineConfig",
    "DataConfig",
    "DistillConfig",
    "InferConfig",
    "LossConfig",
    "ModelConfig",
    "RunConfig",
    "PretrainedStartMissing",
    "TrainConfig",
    "apply_overrides",
    "from_dict",
    "load_config",
    "old_defaults",
    "resolved",
    "save_config",
    "teacher_available",
    "to_dict",
]
