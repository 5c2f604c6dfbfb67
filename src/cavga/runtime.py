"""Device choice, seeding and checkpoint files."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import torch

from .errors import CavgaError
from .io_utils import atomic_write

CHECKPOINT = "checkpoint.pt"


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present; asking for CUDA without it is an error, not a silent fallback."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise CavgaError(f"--device {name}: CUDA is not available on this machine (use --device cpu or auto)")
    try:
        return torch.device(name)
    except RuntimeError:
        raise CavgaError(f"--device {name}: not a device name (auto, cpu, cuda, cuda:N)") from None


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """Write atomically and read the file back before it replaces the previous checkpoint."""

    def write(tmp: str) -> None:
        torch.save(state, tmp)
        torch.load(tmp, map_location="cpu", weights_only=False)  # a broken file never replaces a good one

    return atomic_write(path, write)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CavgaError(f"{path}: no checkpoint here (train a model first with `cavga train`)")
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001 - any unreadable checkpoint is reported the same way
        raise CavgaError(f"{path}: cannot read checkpoint ({type(e).__name__}: {e})") from None
