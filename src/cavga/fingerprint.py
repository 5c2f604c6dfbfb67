"""A run's identity: hashes of the configuration and the split it was trained with.

The checkpoint records them; ``evaluate`` and ``predict`` refuse a run folder whose ``config.yaml``
or ``split.json`` no longer match its checkpoint (for instance after two trainings wrote into it).
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

from .errors import CavgaError

# Settings a resumed run may change (see runfolder.check_resumable); they are not part of its identity.
# The speed settings (cavga.accel) are among them, so runs from before they existed keep their identity.
MUTABLE = {
    "train": (
        "epochs",
        "device",
        "num_workers",
        "allow_random_init",
        "bf16",
        "channels_last",
        "compile",
        "cache_mb",
        "checkpoint_every",
        "deterministic",
    ),
    "infer": None,
}


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


def config_fingerprint(config: dict[str, Any]) -> str:
    """Hash of a config dict (``config.to_dict``) without the settings a resume may change."""
    c = copy.deepcopy(config)
    from .config import ADDED, BASELINES

    if c.get("model", {}).get("variant") not in BASELINES:
        c.pop("baseline", None)  # CAVGA ignores it; runs from before the section existed keep their hash
    if c.get("model", {}).get("encoder_init", "dcgan") != "distill":
        c.pop("distill", None)  # only a distilled start reads it; older runs keep their hash
    for section, keys in MUTABLE.items():
        if keys is None:
            c.pop(section, None)
        else:
            for k in keys:
                c.get(section, {}).pop(k, None)
    for section, keys in ADDED.items():
        for k, neutral in keys.items():
            if k in c.get(section, {}) and c[section][k] == neutral:
                del c[section][k]
    return _digest(c)


def split_fingerprint(split: dict[str, Any]) -> str:
    """Hash of a split dict (``RunData.to_dict``, as saved in split.json)."""
    return _digest(json.loads(json.dumps(split)))


def fingerprint(config: dict[str, Any], split: dict[str, Any]) -> dict[str, str]:
    return {"config": config_fingerprint(config), "split": split_fingerprint(split)}


def check_run_folder(run_dir: str | Path, state: dict[str, Any]) -> None:
    """Refuse a run folder whose config.yaml, split.json and checkpoint come from different runs.

    Checkpoints written before fingerprints existed are not checked."""
    from .config import load_config, to_dict
    from .runfolder import SPLIT_FILE, RunData

    saved = state.get("fingerprint")
    if not isinstance(saved, dict):
        return
    run_dir = Path(run_dir)
    mixed = "; the folder mixes two runs (were two trainings started with this --out?). Retrain into a new folder"
    if config_fingerprint(state["config"]) != saved.get("config"):
        raise CavgaError(f"{run_dir / 'checkpoint.pt'}: its configuration does not match its fingerprint{mixed}")
    config_file = run_dir / "config.yaml"
    on_disk = load_config(config_file, saved=True) if config_file.is_file() else None
    if on_disk is not None and config_fingerprint(to_dict(on_disk)) != saved.get("config"):
        raise CavgaError(f"{config_file}: not the configuration the checkpoint was trained with{mixed}")
    split_file = run_dir / SPLIT_FILE
    if split_file.is_file():
        if split_fingerprint(RunData.load(run_dir).to_dict()) != saved.get("split"):
            raise CavgaError(f"{split_file}: not the split the checkpoint was trained on{mixed}")
