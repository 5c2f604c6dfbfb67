"""The training loop's loss book-keeping, without a host sync per step.

``train_step`` returns its losses as device tensors; :class:`LossLog` keeps them and reads them
back in one transfer per log interval (and at the end of the epoch), checks that they are finite
(naming the first bad step) and sums them for the epoch's history record.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from .errors import CavgaError


class LossLog:
    """One epoch's step losses; ``read`` brings the unread ones to the host at once."""

    def __init__(self, epoch: int, ckpt_path: Path, kept_epoch: int | None = None):
        self.epoch, self.ckpt_path, self.kept_epoch = epoch, ckpt_path, kept_epoch
        self.pending: list[dict[str, Any]] = []  # steps not read yet (tensors or floats)
        self.sums: dict[str, float] = defaultdict(float)
        self.steps = 0  # steps read so far
        self.last: dict[str, float] = {}

    def add(self, losses: dict[str, Any]) -> None:
        self.pending.append(losses)

    def read(self) -> dict[str, float]:
        """Read the pending steps (one device-to-host copy), check them, add them to the sums; the
        latest step's losses."""
        if not self.pending:
            return self.last
        keys = [list(s) for s in self.pending]
        flat = torch.cat(
            [torch.stack([torch.as_tensor(v).detach().float().reshape(()) for v in s.values()]) for s in self.pending]
        )
        values = flat.cpu().tolist()
        i = 0
        for k in keys:
            row = dict(zip(k, values[i : i + len(k)], strict=True))
            i += len(k)
            self.steps += 1
            check_finite(row, self.epoch, self.steps, self.ckpt_path, self.kept_epoch)
            for name, v in row.items():
                self.sums[name] += v
            self.last = row
        self.pending.clear()
        return self.last

    def means(self) -> dict[str, float]:
        """Each loss averaged over the epoch's steps (after a final ``read``)."""
        self.read()
        return {k: v / max(self.steps, 1) for k, v in self.sums.items()}


def check_finite(
    losses: dict[str, float], epoch: int, step: int, ckpt_path: Path, kept_epoch: int | None = None
) -> None:
    """Stop the run at the first NaN or infinite loss, naming where; the checkpoint is not touched.
    ``kept_epoch``: the epoch the checkpoint holds (``epoch - 1`` when every epoch is saved)."""
    bad = [k for k, v in losses.items() if not math.isfinite(v) and k != "total"] or [
        k for k, v in losses.items() if not math.isfinite(v)
    ]
    if bad:
        terms = ", ".join(f"{k}={losses[k]}" for k in bad)
        kept_epoch = epoch - 1 if kept_epoch is None else kept_epoch
        kept = f"{ckpt_path} (epoch {kept_epoch}) is kept" if kept_epoch > 0 else "no checkpoint was written"
        raise CavgaError(
            f"training diverged at epoch {epoch}, step {step}: loss {terms}; stopped, {kept} "
            "(try a lower train.lr or loss weights)"
        )


def check_finite_parameters(named: Iterable[tuple[str, torch.Tensor]], epoch: int) -> None:
    """Refuse to checkpoint a model with a NaN or infinite parameter, naming it."""
    for name, p in named:
        if not torch.isfinite(p).all():
            raise CavgaError(f"training diverged before epoch {epoch} ended: parameter {name} is not finite; stopped")
