"""Command-line flags and the config keys they set; a run's config from defaults, --config, flags and --set."""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from ..config import RunConfig, apply_overrides, load_config, to_dict
from ..config.io import read_yaml
from ..errors import CavgaError

# Command-line flags and the config keys they set (one flag may set two keys).
FLAGS = (
    ("--data", "data.root", "data"),
    ("--layout", "data.layout", "layout"),
    ("--category", "data.category", "category"),
    ("--image-size", "data.image_size", "image_size"),
    ("--resize", "data.resize", "resize"),
    ("--seed", "data.seed", "seed"),
    ("--anomalous-fraction", "data.anomalous_fraction", "anomalous_fraction"),
    ("--model", "model.variant", "model"),
    ("--flat-latent", "model.flat_latent", "flat_latent"),
    ("--backbone", "model.backbone", "backbone"),
    ("--backbone-weights", "model.backbone_weights", "backbone_weights"),
    ("--freeze-encoder", "model.freeze_encoder", "freeze_encoder"),
    ("--encoder-init", "model.encoder_init", "encoder_init"),
    ("--encoder-stride", "model.encoder_stride", "encoder_stride"),
    ("--epochs", "train.epochs", "epochs"),
    ("--device", "train.device", "device"),
    ("--seed", "train.seed", "seed"),
    ("--batch-size", "train.batch_size", "batch_size"),
    ("--lr", "train.lr", "lr"),
    ("--augment", "train.augment", "augment"),
    ("--validate-every", "train.validate_every", "validate_every"),
    ("--restarts", "train.restarts", "restarts"),
    ("--patience", "train.patience", "patience"),
    ("--allow-random-init", "train.allow_random_init", "allow_random_init"),
)
# What a resumed run may change; every other flag must agree with the run's config.yaml.
RESUMABLE = ("train.epochs", "train.device", "train.allow_random_init", "train.patience")


def flag_values(args: argparse.Namespace) -> dict[str, object]:
    """The config keys the flags set, None where a flag was not given."""
    return {key: getattr(args, attr, None) for _, key, attr in FLAGS}


def run_config(args: argparse.Namespace) -> RunConfig:
    """Defaults < --config file < explicit flags < --set overrides."""
    cfg = load_config(args.config) if args.config else RunConfig()
    apply_overrides(cfg, flag_values(args))
    apply_overrides(cfg, args.overrides)
    return cfg


def resume_config(args: argparse.Namespace, run_dir: Path) -> RunConfig:
    """The run's own config.yaml; a flag that disagrees with it is an error naming the flag."""
    from ..runfolder import same_folder

    if args.config:
        raise CavgaError(f"--config cannot be combined with --resume: {run_dir} keeps its own config.yaml")
    cfg = load_config(run_dir / "config.yaml", saved=True)
    saved = to_dict(cfg)
    asked = RunConfig()
    apply_overrides(asked, flag_values(args))
    for flag, key, attr in FLAGS:
        if getattr(args, attr, None) is None or key in RESUMABLE:
            continue
        section, _, name = key.partition(".")
        have, want = saved[section][name], getattr(getattr(asked, section), name)
        same = have == want or (key == "data.root" and have and same_folder(have, want))
        if not same:
            raise CavgaError(
                f"--resume: {flag} {getattr(args, attr)} conflicts with the run in {run_dir}, started with "
                f"{key}={have!r} (leave the flag out, or start a new run in another --out)"
            )
    apply_overrides(cfg, {"train.epochs": args.epochs, "train.device": args.device, "train.patience": args.patience})
    apply_overrides(cfg, args.overrides)
    return cfg


def with_flag(message: str, args: argparse.Namespace | None) -> str:
    """A configuration error about a key the user gave as a flag names the flag as typed, beside the
    key (``--image-size (data.image_size): 48 is not a power of two``); a ``--set`` of that key wins."""
    key, sep, rest = message.partition(": ")
    if args is None or not sep:
        return message
    given = {item.partition("=")[0].strip() for item in getattr(args, "overrides", None) or []}
    for flag, dotted, attr in FLAGS:
        if dotted == key and key not in given and getattr(args, attr, None) is not None:
            return f"{flag} ({key}): {rest}"
    config = getattr(args, "config", None)
    if config and key not in given and _file_sets(config, key):  # a range check's message, from --config
        return f"{config}: {message}"
    return message


def _file_sets(path: str | Path, key: str) -> bool:
    """Whether the config file at ``path`` (already read without error) sets ``section.key``."""
    section, _, name = key.partition(".")
    try:
        raw = read_yaml(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return False
    values = raw.get(section) if isinstance(raw, dict) else None
    return isinstance(values, dict) and name in values
