"""Whether a run is finished: all its epochs trained (or ``train.patience`` spent), then training's end run.

Training's end (:mod:`cavga.decisions`, or a baseline's fit) always fits the score normaliser, last of
what it writes; a checkpoint without one stopped before or during that end, holding the last epoch's
weights where ``train.validate_every`` would have chosen another epoch's. ``evaluate``, ``predict``,
``validate``, ``redecide`` and a resumed ``train`` all ask here.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

from .config import RunConfig
from .errors import CavgaError
from .runfolder import eligible_scores, patience_spent


def training_done(state: dict[str, Any], cfg: RunConfig) -> bool:
    """Whether the checkpoint ``state`` has trained all ``train.epochs`` or stopped early by ``train.patience``."""
    choice = state.get("epoch_choice") or {}
    scores = {int(e): float(v) for e, v in (choice.get("scores") or {}).items()}
    scores = eligible_scores(scores, choice.get("barred") or ())
    return state.get("epoch", 0) >= cfg.train.epochs or patience_spent(scores, int(cfg.train.patience))


def training_finished(state: dict[str, Any], cfg: RunConfig) -> bool:
    """:func:`training_done`, and training's end ran (CAVGA-u, -w and the baselines alike)."""
    return training_done(state, cfg) and state.get("normalizer") is not None


def check_finished(run_dir: str | Path, state: dict[str, Any], cfg: RunConfig) -> None:
    """Nothing for a finished run; else one line saying how far it got and how to finish it."""
    if training_finished(state, cfg):
        return
    epoch, resume = state.get("epoch"), f"`cavga train --out {shlex.quote(str(run_dir))} --resume`"
    if not training_done(state, cfg):
        raise CavgaError(f"{run_dir}: training stopped at epoch {epoch} of {cfg.train.epochs}; finish it with {resume}")
    raise CavgaError(
        f"{run_dir}: training's end did not run (stopped at epoch {epoch} of {cfg.train.epochs}); "
        f"finish it with {resume}"
    )
