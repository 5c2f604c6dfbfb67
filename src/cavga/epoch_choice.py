"""The epoch a run ends on, chosen by the painted check (``train.validate_every``).

Every ``validate_every`` epochs, and at the last, the model scores the painted held-out normals:
the pixel AUROC of the map it would use, its ``auto`` settings decided as training's end decides
them (:func:`cavga.painted_decisions.epoch_check`, the number ``cavga validate`` reports). Training
then ends on the weights of the best-scoring epoch (ties: the later); the end-of-training decisions,
statistics and checkpoint are of those weights. No test image and no real anomaly is read.

Why: with a frozen pretrained encoder, the attention's localisation peaks early and then declines
on bottle (docs/method.md, "The epoch, chosen on painted defects"), and where it peaks differs by
data set and seed, so no one epoch count serves.

The check does not touch the random stream, so the weights trained are those of a run without it.
The checkpoint carries the choice so far (and the best weights), so a resumed run chooses as an
uninterrupted one; the final checkpoint's ``model`` is the chosen weights, its ``last_model`` the last
epoch's where they differ (a resume to more epochs trains on from them).

With ``train.patience`` P > 0 training also stops early, once P checks in a row have not matched the
best one (:func:`patience_spent`): the epochs after would only be trained to be passed over, unless a
later check climbed back above an earlier peak, which none of the stored runs did two checks after
it (cavga.config.resolve). Such a run is finished at the epoch it stopped on.

The guard: each check also scores the painted images by the reconstruction BCE above its floor (the
VAE's own evidence, Eq. 1). An epoch cannot be kept where that image AUROC has fallen below
``BCE_INVERTED`` (0.5: it ranks the painted images *under* the clean ones) after being at least
``BCE_SOUND`` (0.9) at the run's first check: the reconstruction's verdict has collapsed during
training, whatever the map does. Why: on bottle's CAVGA-Rw (frozen Lite0) the map's painted pixel
AUROC kept climbing while the BCE's painted image AUROC fell from 0.99-1.00 at epoch 20 to 0.01-0.33
at epochs 60-100 and the KL term sixfold (docs/method.md, "The epoch, chosen on painted defects";
docs/results.md, "Session 62"). A run whose reconstruction never ranked the painted set well (CAVGA-Du on
bottle: 0.26-0.41 at epoch 20, its map localising) is untouched. A barred epoch counts towards
``train.patience`` as a check that did not match the best.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any

import torch

from .config import RunConfig
from .data import why_none_held_out
from .distributed import broadcast_object, is_main
from .errors import CavgaError
from .networks import CAVGA
from .painted_decisions import epoch_check
from .painting import held_out_images
from .runfolder import RunData, eligible_scores, patience_spent

BCE_SOUND = 0.9  # the guard applies where the BCE ranked the painted images at least this well at the first check
BCE_INVERTED = 0.5  # ... and bars the epochs where it has fallen under this (below chance)


def check_held_out(cfg: RunConfig, run_data: RunData) -> None:
    """``train.validate_every`` needs held-out normal images to paint: an error saying why there are none
    (``cavga train`` calls it before it writes anything, and :meth:`EpochChoice.start` again)."""
    if cfg.train.validate_every and not any(r.label == 0 for r in run_data.val):
        reason = why_none_held_out(sum(r.label == 0 for r in run_data.train), cfg.data.val_fraction)
        raise CavgaError(
            f"train.validate_every needs held-out normal images to paint, and none are held out: {reason} "
            "(or set --validate-every 0 to train without the painted check)"
        )


@dataclass
class EpochChoice:
    """The painted scores so far and the best epoch's weights."""

    every: int
    images: torch.Tensor  # (N, 3, S, S) held-out normals, painted at each check
    boxes: list
    scores: dict[int, float] = field(default_factory=dict)  # epoch -> painted pixel AUROC
    bce: dict[int, float] = field(default_factory=dict)  # epoch -> the BCE's painted image AUROC (the guard)
    best_epoch: int = 0
    best_model: dict[str, torch.Tensor] | None = None  # on the CPU
    patience: int = 0  # train.patience: stop once this many checks have come after the best (0: never)

    @classmethod
    def start(cls, cfg: RunConfig, run_data: RunData, state: dict[str, Any] | None) -> EpochChoice | None:
        """None without ``train.validate_every``; else the choice, resumed from ``state`` if it holds one."""
        if not cfg.train.validate_every:
            return None
        check_held_out(cfg, run_data)
        images, boxes = held_out_images(run_data.val, cfg.data.image_size, cfg.data.resize)  # (N, 3, S, S)
        choice = cls(cfg.train.validate_every, images, boxes, patience=int(cfg.train.patience))
        saved = (state or {}).get("epoch_choice")
        if saved:
            choice.scores = {int(e): float(v) for e, v in saved["scores"].items()}
            choice.bce = {int(e): float(v) for e, v in (saved.get("bce") or {}).items()}  # none before the guard
            choice.best_epoch = int(saved["best_epoch"])
            choice.best_model = saved.get("best_model") or state["model"]  # a finished run's model is the best
        return choice

    def due(self, epoch: int, last: int) -> bool:
        return epoch % self.every == 0 or epoch == last

    def check(self, model: CAVGA, epoch: int, cfg: RunConfig, device: torch.device) -> dict[str, Any]:
        """Score ``model`` after ``epoch``; keep its weights if it is the best so far and not barred.
        Returns the history record's fields."""
        # under DDP rank 0's scores (its batch-norm statistics are the saved ones) on every rank, so that
        # the ranks stop and choose alike; the check draws nothing from training's random stream
        scores = None
        if is_main():
            with torch.random.fork_rng(devices=[]):
                scores = epoch_check(model, self.images, self.boxes, cfg, device)
        score, bce = broadcast_object(scores)
        self.scores[epoch] = -math.inf if math.isnan(score) else score
        self.bce[epoch] = bce
        barred = self.barred()  # an epoch's standing is fixed once checked: its own BCE against the first's
        best = eligible_scores(self.scores, barred).get(self.best_epoch, -math.inf)
        if epoch not in barred and self.scores[epoch] >= best:
            self.best_epoch = epoch
            self.best_model = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        record = {"painted_pixel_auroc": self.scores[epoch], "painted_bce_image_auroc": bce}
        return record | ({"painted_barred": True} if epoch in barred else {})

    def barred(self) -> list[int]:
        """The checked epochs the guard bars: the BCE's painted image AUROC under ``BCE_INVERTED``
        after at least ``BCE_SOUND`` at the first check (module docstring)."""
        first = min(self.scores, default=None)  # a run resumed from before the guard has no BCE there: unguarded
        if first not in self.bce or self.bce[first] < BCE_SOUND:
            return []
        return sorted(e for e, v in self.bce.items() if v < BCE_INVERTED)

    def stale(self) -> bool:
        """Whether training should stop here (``train.patience`` checks after the best)."""
        return patience_spent(eligible_scores(self.scores, self.barred()), self.patience)

    def saved(self, with_weights: bool = True) -> dict[str, Any]:
        """For the checkpoint: the scores, the guard's and best epoch, and (mid-run) the best weights."""
        out: dict[str, Any] = {"scores": dict(self.scores), "best_epoch": self.best_epoch, "every": self.every}
        out |= {"bce": dict(self.bce), "barred": self.barred()}
        if with_weights:
            out["best_model"] = self.best_model
        return out

    def finish(self, model: CAVGA, state: dict[str, Any]) -> None:
        """Load the best epoch's weights into ``model`` and ``state`` (the final checkpoint), keeping
        the last epoch's as ``last_model`` where they differ."""
        if self.best_model is not None and self.best_epoch != max(self.scores):
            state["last_model"] = copy.deepcopy(state["model"])
            model.load_state_dict(self.best_model)
            state["model"] = model.state_dict()
        state["epoch_choice"] = self.saved(with_weights=False)
