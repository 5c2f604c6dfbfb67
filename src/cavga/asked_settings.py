"""Inference settings a finished run would not use as asked: each said in one warning, never refused.

* ``DECIDING_SETTINGS`` act only when training's end decides the ``auto`` inference settings
  (:func:`cavga.decisions.finish_decisions`): how many painted copies the mask threshold is decided
  on, how faded the paint is, which map directions are weighed. Evaluate and predict read the
  decisions stored in the checkpoint, so these change nothing there; nor does ``auto`` asked where
  training's end decided nothing for that setting (it reads as its ``AUTO_SETTINGS`` fallback).
  ``cavga redecide RUN OUT --set infer.K=V`` makes the decisions again.
* A config.yaml whose ``infer`` section differs from its checkpoint's (edited by hand): the
  checkpoint's settings are the ones used (:func:`cavga.fingerprint.check_run_folder` leaves the
  inference settings out of a run's identity).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from .config import RunConfig, from_dict, load_config, to_dict
from .config.resolve import mask_fade, score_fade
from .map_choice import AUTO_SETTINGS

# the inference settings only training's end reads (cavga.mask_threshold, cavga.painted_decisions)
DECIDING_SETTINGS = ("mask_copies", "mask_fade", "score_fade", "direction_candidates", "direction_fade")
_AS_NUMBER = {"mask_fade": mask_fade, "score_fade": score_fade}  # "auto" compared as the number it stands for


class DecidedUnderOtherSettings(UserWarning):
    """An inference setting asked for at evaluate, predict or validate that only training's end acts on."""


class EditedRunConfig(UserWarning):
    """A run's config.yaml holds other inference settings than its checkpoint, whose settings are used."""


def _saved(state: dict[str, Any], infer: dict[str, Any] | None = None) -> RunConfig:
    """The checkpoint's configuration as saved (keys it lacks: as it was made), ``infer`` in place of its own."""
    raw = state["config"] if infer is None else {**state["config"], "infer": infer}
    return from_dict(raw, "checkpoint", saved=True)


def _item(key: str, value: Any) -> str:
    return f"infer.{key}={str(value).lower() if isinstance(value, bool) else value}"


def settings_in_effect(
    run_dir: str | Path, state: dict[str, Any], requested: dict[str, Any], acting: tuple[str, ...] = ()
) -> dict[str, Any]:
    """Warn once where ``requested`` (the ``infer`` section asked for, autos unresolved) changes a
    decision-only setting from the run's own value, or asks ``auto`` for a setting training's end did
    not decide; return ``requested`` with those decision-only settings at the run's own values, the
    ones its answers stand for (metrics.json's "infer"). ``acting``: decision-only settings the caller
    reads itself (validate's mask sweep reads ``mask_fade``)."""
    saved, asked = _saved(state), _saved(state, requested)

    def value(cfg: RunConfig, key: str) -> Any:
        return _AS_NUMBER[key](cfg) if key in _AS_NUMBER else getattr(cfg.infer, key)

    changed = [k for k in DECIDING_SETTINGS if k not in acting and value(asked, k) != value(saved, k)]
    undecided = [
        k
        for k in AUTO_SETTINGS
        if requested[k] == "auto" and getattr(saved.infer, k) != "auto" and k not in (state.get(k) or {})
    ]
    if changed or undecided:
        said = []
        if changed:
            own = ", ".join(_item(k, getattr(saved.infer, k)) for k in changed)
            said.append(
                f"{', '.join(_item(k, requested[k]) for k in changed)} act{'s' * (len(changed) == 1)} only when "
                f"training's end decides the auto settings, so the decisions it made under {own} stand"
            )
        if undecided:
            fallback = ", ".join(_item(k, AUTO_SETTINGS[k]) for k in undecided)
            said.append(f"training's end decided no {', '.join(undecided)} for this run, so auto reads as {fallback}")
        flags = " ".join(f"--set {_item(k, requested[k])}" for k in changed + undecided)
        warnings.warn(
            f"{run_dir}: {'; '.join(said)}; `cavga redecide {run_dir} NEW_DIR {flags}` decides them again",
            DecidedUnderOtherSettings,
            stacklevel=3,
        )
    return {**requested, **{k: getattr(saved.infer, k) for k in changed}}


def warn_edited_config(run_dir: str | Path, state: dict[str, Any]) -> None:
    """Warn where the run's config.yaml asks other inference settings than its checkpoint, which is read."""
    config_file = Path(run_dir) / "config.yaml"
    if not config_file.is_file():
        return
    on_disk, saved = to_dict(load_config(config_file, saved=True))["infer"], to_dict(_saved(state))["infer"]
    edited = [f"infer.{k}" for k, v in saved.items() if on_disk[k] != v]
    if edited:
        warnings.warn(
            f"{config_file}: the inference settings differ from the checkpoint's ({', '.join(edited)}), which are "
            f"the ones used; --set infer.K=V changes one for this command, and `cavga redecide {run_dir} NEW_DIR "
            "--set infer.K=V` writes a copy of the run that keeps it",
            EditedRunConfig,
            stacklevel=3,
        )
