"""Training's end made again on a finished run, in a new folder: ``cavga redecide RUN OUT --set infer.K=V``.

A run's inference settings left at ``auto`` (the map's direction, the image score, the half-cell shifts,
the enlarged image, the mask quantile with its margin and peak fraction) are decided on painted
held-out normals when training ends, for the map the run was configured with. Changing a map setting
afterwards (``--set infer.map_blur=0`` on predict or evaluate) refits the held-out statistics of the
new map but keeps the old decisions, made on another map. This makes them again for the new
settings with today's code, exactly as a new training's end would (:func:`cavga.decisions.finish_decisions`;
for AE-L2, AE-SSIM and PatchCore :func:`cavga.baselines.fit.finish_baseline_decisions`): the same
weights, held-out normals only, no test image. The run itself is never changed: the result is a copy,
written in a temporary folder beside OUT and renamed to OUT once complete (removed again on Ctrl-C or
SIGTERM). The run's lock is held while it is read and copied: not while a training writes into it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import tempfile
import threading
from functools import partial
from pathlib import Path
from typing import Any

import torch

from .completion import check_finished
from .config import RunConfig, save_config, to_dict
from .errors import CavgaError
from .evaluate import METRICS_FILE, OVERLAYS_DIR
from .fingerprint import check_run_folder
from .map_choice import AUTO_SETTINGS
from .report.run_report import REPORT_DIR, remove_run_report
from .report.scores import MAPS_DIR, SCORES_FILE
from .runfolder import VALIDATION_FILE, RunData, saved_run, with_infer
from .runlock import LOCK_FILE, RunLock
from .runtime import CHECKPOINT, resolve_device, save_checkpoint

# what evaluate and validate wrote from the old decisions, and a training's lock
STALE_FILES = (LOCK_FILE, METRICS_FILE, VALIDATION_FILE, SCORES_FILE)
STALE_FOLDERS = (MAPS_DIR, REPORT_DIR, OVERLAYS_DIR)  # evaluate's test maps, report page and comparison strips
# every setting training's end decides: the auto ones, then the same-run residual's mask level (since session 58)
DECISIONS = (*AUTO_SETTINGS, "residual_mask")


def redecide_run(run_dir: str | Path, out_dir: str | Path, infer: list[str], device: str = "auto") -> dict[str, Any]:
    """Copy the finished run ``run_dir`` to ``out_dir`` (which must not exist) with the ``infer``
    overrides (``"infer.map_blur=0"``; ``auto`` values are decided) and training's end made again
    there; return the decisions, by setting."""
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    if out_dir.exists():
        raise CavgaError(f"{out_dir}: already exists; redecide writes a new folder and never overwrites one")
    if out_dir.resolve().is_relative_to(run_dir.resolve()):  # the copy would copy itself, without end
        raise CavgaError(f"{out_dir}: inside the run folder {run_dir}; give OUT outside it")
    with _sigterm_as_exit(), contextlib.ExitStack() as cleanup:
        with RunLock(run_dir, "redecide", create=False):  # a run still training says so, by its lock
            state, cfg = saved_run(run_dir, infer)
            check_run_folder(run_dir, state)
            check_finished(run_dir, state, cfg)
            run_data = RunData.load(run_dir)  # read here, so that its errors name RUN, not the copy
            out_dir.parent.mkdir(parents=True, exist_ok=True)
            work = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
            cleanup.callback(shutil.rmtree, work, ignore_errors=True)
            copy = work / "run"
            # the rest of the run as it is; its top-level checkpoint is written anew below, and what the old
            # decisions produced (and the lock) is left behind (the restart candidates' checkpoints: linked)
            shutil.copytree(run_dir, copy, ignore=partial(_renewed, run_dir), copy_function=_link_checkpoint)
        decided = _decide_into(copy, state, cfg, run_data, device)
        copy.rename(out_dir)  # complete, or not there at all
    return decided


def infer_settings(cfg: RunConfig) -> list[str]:
    """``cfg``'s whole inference section as ``"infer.K=V"`` items (a run evaluated, or decided again,
    under exactly these settings)."""
    return [f"infer.{k}={json.dumps(v)}" for k, v in to_dict(cfg)["infer"].items()]


def redecide_in_place(run_dir: str | Path, infer: list[str], device: str = "auto") -> dict[str, Any] | None:
    """Training's end made again inside ``run_dir`` where the ``infer`` settings (the full section, as
    ``"infer.K=V"``) differ from those its decisions were made under (a grid cell rerun with
    ``--set infer.K=V``); None where they are the same. The checkpoint is replaced whole (atomically),
    then what evaluate wrote from the old decisions is removed; the run's lock is held throughout."""
    run_dir = Path(run_dir)
    with RunLock(run_dir, "redecide"):
        state, cfg = saved_run(run_dir)
        before = to_dict(cfg)["infer"]
        if to_dict(with_infer(cfg, infer))["infer"] == before:  # as saved_run(run_dir, infer), one read
            return None
        check_run_folder(run_dir, state)
        check_finished(run_dir, state, cfg)
        decided = _decide_into(run_dir, state, cfg, RunData.load(run_dir), device)
        for name in set(STALE_FILES) - {LOCK_FILE}:
            (run_dir / name).unlink(missing_ok=True)
        for name in set(STALE_FOLDERS) - {REPORT_DIR}:
            shutil.rmtree(run_dir / name, ignore_errors=True)
        remove_run_report(run_dir)  # the page of the old decisions; a file of the user's there stays
    return decided


def _decide_into(folder: Path, state: dict[str, Any], cfg: RunConfig, run_data: RunData, device: str) -> dict[str, Any]:
    """Training's end made again for ``state``'s weights under ``cfg`` on ``run_data`` (the run's split),
    written into ``folder`` (its checkpoint replaced whole, its config.yaml rewritten); the decisions, by setting."""
    decided = _decide(state, cfg, run_data, resolve_device(device))
    state["config"] = to_dict(cfg)
    state.update(decided)
    save_checkpoint(state, folder / CHECKPOINT)
    save_config(cfg, folder / "config.yaml")
    return {key: decided[key] for key in DECISIONS if decided.get(key)}


@contextlib.contextmanager
def _sigterm_as_exit():
    """SIGTERM (``kill``, a job scheduler's stop) raised as SystemExit inside, so that the work folder is
    removed as on Ctrl-C; the exit status stays SIGTERM's (143). Only over Python's default handling,
    in the main thread: a caller's own handler is kept."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) != signal.SIG_DFL:
        yield
        return

    def stop(signum, frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _renewed(run_dir: Path, folder: str, names: list[str]) -> set[str]:
    """Of ``names`` in ``folder`` (copytree's walk), those the copy gets anew or without: at the run's
    top level its checkpoint and what the old decisions produced."""
    return {CHECKPOINT, *STALE_FILES, *STALE_FOLDERS} & set(names) if Path(folder) == run_dir else set()


def _link_checkpoint(src: str, dst: str) -> str:
    """Copy ``src`` to ``dst``; a checkpoint (a restart candidate's, 145 MB at 128 px for CAVGA-Du) is
    hard-linked instead where the file system allows. Sharing it is safe: a checkpoint is never changed
    in place, only replaced whole by a new file (:func:`cavga.runtime.save_checkpoint`), which leaves
    the other folder's link on the old file."""
    if Path(src).name == CHECKPOINT:
        try:
            os.link(src, dst)
            return dst
        except OSError:  # another file system, or one without hard links: a copy
            pass
    return shutil.copy2(src, dst)


def _decide(state: dict[str, Any], cfg: RunConfig, run_data: RunData, device: torch.device) -> dict[str, Any]:
    """Training's (or fitting's) end for the run's weights in ``state`` under ``cfg``."""
    if cfg.model.is_baseline:  # AE-L2, AE-SSIM, PatchCore: their fitting's end
        from .baselines.fit import finish_baseline_decisions
        from .baselines.scoring import load_baseline

        return finish_baseline_decisions(load_baseline(state, cfg).to(device), cfg, run_data, device)
    from .decisions import finish_decisions
    from .networks import build_networks

    model, _ = build_networks(cfg.model, cfg.data.image_size, from_checkpoint=True)
    model.load_state_dict(state["model"])
    return finish_decisions(model.to(device), run_data, cfg, device)
