"""Running a grid: one train + evaluate per cell into ``OUT/<model>/<row>/seed<k>``, resumable.

A cell is finished when its ``metrics.json`` carries the cell's fingerprint (a hash of its whole
configuration, epochs and inference settings included; device and workers left out): a rerun skips
it. A cell with a checkpoint but no matching metrics continues its training (``train(resume=True)``)
and is evaluated again with the cell's inference settings: a rerun that changes only those
re-evaluates the finished checkpoints, training nothing. The result tables are rewritten after every cell.
"""

from __future__ import annotations

import copy
import hashlib
import json
import multiprocessing
import os
import signal
import threading
import time
import warnings
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..config import ADDED, RunConfig, apply_overrides, from_dict, load_config, resolved, to_dict
from ..data import load_split
from ..errors import CavgaError
from ..evaluate import METRICS_FILE, evaluate_run
from ..io_utils import atomic_write_json, check_output_folder, refuse_foreign, table_files
from ..redecide import infer_settings, redecide_in_place
from ..runfolder import completed_epochs, same_folder
from ..runlock import RunLock
from ..runtime import CHECKPOINT
from ..train import train
from .spec import DatasetSpec, GridSpec, ModelSpec, set_values

# settings that do not change a cell's result (infer.mask_gate: metrics.json holds IoU with and without it)
NOT_IDENTITY = {"train": ("device", "num_workers"), "infer": ("mask_gate",)}
# Keys of cavga.config.ADDED added since session 31: at their "as before" value they stay out of a
# cell's fingerprint, so that the cells of older grids stay finished. Each new key joins here (the
# older ones of ADDED stay in: leaving them out now would unfinish every cell made since they came).
ADDED_SINCE = {
    "infer": ("mask_margin", "mask_peak_fraction", "mask_min_area", "direction_candidates", "direction_fade"),
    "train": ("validate_every", "restarts", "patience"),
}


@dataclass
class Cell:
    """One (model, data set, category, seed) of the grid, with its full configuration."""

    model: ModelSpec
    dataset: DatasetSpec
    category: str | None
    seed: int
    cfg: RunConfig
    dir: Path
    file_epochs: int | None = None  # train.epochs as the grid file gives it, before command-line overrides

    @property
    def row(self) -> str:
        return self.dataset.row(self.category)

    def key(self) -> dict[str, Any]:
        return {"model": self.model.name, "dataset": self.dataset.name, "category": self.row, "seed": self.seed}


STATUS = {"done": "finished before, kept", "run": "training", "queued": "queued", "finished": "finished"}


def progress_line(cell: Cell, status: str) -> str:
    """The line `cavga benchmark --grid` prints for a cell's ``status`` (a key of ``STATUS``), naming its
    data set, so that cells of two data sets with the same row (digits 0, mnist 0) read apart."""
    return f"{cell.dataset.name}: {cell.model.name} / {cell.row} / seed {cell.seed}: {STATUS[status]}"


def cell_fingerprint(cfg: RunConfig) -> str:
    """Hash of everything in ``cfg`` that can change a cell's result."""
    d = copy.deepcopy(to_dict(cfg))
    for section, keys in NOT_IDENTITY.items():
        for k in keys:
            d[section].pop(k, None)
    for section, keys in ADDED_SINCE.items():
        for k in keys:
            if d[section].get(k) == ADDED[section][k]:
                d[section].pop(k, None)
    return hashlib.sha256(json.dumps(d, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


def build_cells(spec: GridSpec, out: str | Path, overrides: dict[str, Any] | None = None, sets: list[str] | None = None,
                validate: bool = True) -> list[Cell]:  # fmt: skip
    """Every cell of ``spec`` in run order (data set, category, seed, model); ``overrides`` (dotted keys,
    None: unset) and ``sets`` (``section.key=value``) apply to every cell last."""
    out = Path(out)
    several = len(spec.datasets) > 1
    cells = []
    for ds in spec.datasets:
        for category in ds.categories:
            for seed in spec.seeds:
                for m in spec.models:
                    cfg = from_dict(copy.deepcopy(spec.sections), spec.source)
                    set_values(cfg, {f"data.{k}": v for k, v in ds.data.items()})
                    set_values(cfg, ds.overrides)
                    set_values(cfg, {"model.variant": m.variant, **m.overrides})
                    set_values(cfg, {"data.category": category, "data.seed": seed, "train.seed": seed})
                    file_epochs = cfg.train.epochs
                    apply_overrides(cfg, overrides or {})
                    apply_overrides(cfg, list(sets or []))
                    cfg = resolved(cfg)  # "auto" model settings concrete, so fingerprints compare what runs
                    row = ds.row(category)
                    folder = out / m.name / (f"{ds.name}-{row}" if several else row) / f"seed{seed}"
                    if validate:
                        try:
                            cfg.validate()
                        except CavgaError as e:
                            raise CavgaError(f"{spec.source}: model {m.name}: {e}") from None
                    cells.append(Cell(m, ds, category, seed, cfg, folder, file_epochs))
    return cells


LISTED_LAYOUTS = ("mvtec", "mtd", "folder")  # listed without opening a file: checked before any cell trains


def check_data(cells: list[Cell]) -> None:
    """List the data folders of ``cells`` (files on disk, not decoded): a missing root or category is
    an error now, not when its cell's turn comes, hours into the grid. The one-class layouts, whose
    loading reads whole array files, are checked by their first cell (their class names already are)."""
    seen = set()
    for cell in cells:
        data = cell.cfg.data
        key = (data.layout, data.root, data.category)
        if data.layout not in LISTED_LAYOUTS or key in seen:
            continue
        seen.add(key)
        with warnings.catch_warnings():  # skipped files are said when the cell trains
            warnings.simplefilter("ignore")
            load_split(data)


def finished(cell: Cell) -> dict[str, Any] | None:
    """The cell's stored result if its metrics.json matches its configuration, else None."""
    try:
        result = json.loads((cell.dir / METRICS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    grid = result.get("grid_cell") if isinstance(result, dict) else None
    if isinstance(grid, dict):
        return result if grid.get("fingerprint") == cell_fingerprint(cell.cfg) else None
    return _adopt(cell, result) if isinstance(result, dict) else None


def _adopt(cell: Cell, result: dict[str, Any]) -> dict[str, Any] | None:
    """A run trained and evaluated outside the grid (``cavga train`` + ``cavga evaluate`` into the
    cell's folder) counts as finished when the configuration it saved is the cell's, epochs
    included, and its metrics.json is newer than its checkpoint (evaluated after its last
    training); its metrics.json is then stamped with the cell's fingerprint."""
    try:
        saved = load_config(cell.dir / "config.yaml", saved=True)
        evaluated_after = (cell.dir / METRICS_FILE).stat().st_mtime >= (cell.dir / CHECKPOINT).stat().st_mtime
    except (OSError, CavgaError):
        return None
    fp = cell_fingerprint(cell.cfg)
    if saved.data.root and cell.cfg.data.root and same_folder(saved.data.root, cell.cfg.data.root):
        saved.data.root = cell.cfg.data.root  # `cavga train --data` given relative: the grid's root resolved
    if cell_fingerprint(saved) != fp or not evaluated_after:
        return None
    if result.get("infer") != to_dict(cell.cfg)["infer"]:  # evaluated under other inference settings
        return None
    result["grid_cell"] = {**cell.key(), "fingerprint": fp, "resumed": False, "adopted": True}
    atomic_write_json(cell.dir / METRICS_FILE, result)
    return result


def run_cell(cell: Cell, progress: bool = True) -> dict[str, Any]:
    """Train (or resume) and evaluate one cell; its metrics.json records the cell and its fingerprint."""
    t0 = time.perf_counter()
    resume = (cell.dir / CHECKPOINT).exists()
    done = completed_epochs(cell.dir)
    if resume and done > cell.cfg.train.epochs:
        raise CavgaError(
            f"{cell.dir}: trained for {done} epochs but the grid asks for {cell.cfg.train.epochs}; "
            "delete this cell's folder to retrain it"
        )
    train(cell.cfg, cell.dir, resume=resume, progress=progress)  # a finished run returns at once
    t_train = time.perf_counter() - t0
    # the cell's inference settings, which may differ from those the checkpoint was trained with: a grid
    # rerun with --set infer.X decides the finished cell's auto settings again under them, on its held-out
    # normals (as `cavga redecide`, in place), and evaluates it, without retraining it
    infer = infer_settings(cell.cfg)
    if resume:
        redecide_in_place(cell.dir, infer, cell.cfg.train.device)
    result = evaluate_run(cell.dir, device=cell.cfg.train.device, progress=progress, infer=infer)
    result["wall_seconds"] = {
        "train_this_call": round(t_train, 1),
        "total_this_call": round(time.perf_counter() - t0, 1),
    }
    result["grid_cell"] = {**cell.key(), "fingerprint": cell_fingerprint(cell.cfg), "resumed": resume}
    atomic_write_json(cell.dir / METRICS_FILE, result)
    return result


GRID_OUTPUTS = ("results.csv", "results.md", "report.html")  # written with results.json


def run_grid(
    spec: GridSpec,
    out: str | Path,
    overrides: dict[str, Any] | None = None,
    sets: list[str] | None = None,
    progress: bool = True,
    on_cell: Callable[[Cell, str], None] | None = None,
    jobs: int = 1,
) -> list[dict[str, Any]]:
    """Run every cell not yet finished, writing OUT/results.{csv,json,md} after each; return the rows.

    ``jobs`` > 1 runs that many cells at once, each in its own process with an equal share of this
    process's threads (progress bars off); results come back as cells finish, and the rows stay in
    the grid's order. ``on_cell(cell, status)`` is told "done" (skipped, finished before), "run"
    (about to start; "queued" when handed to a worker) and "finished" for each cell."""
    from .report import cell_row, write_results

    out = Path(out)
    check_output_folder(out)
    refuse_foreign(table_files(out, "results.json", {"grid", "cells"}, GRID_OUTPUTS), "benchmark --grid")
    if jobs < 1:
        raise CavgaError(f"--jobs {jobs}: give 1 or more cells to run at once")
    cells = build_cells(spec, out, overrides, sets)
    notify = on_cell or _quiet
    results: dict[int, dict[str, Any]] = {}

    def write() -> None:
        write_results(out, spec, [cell_row(cells[k], results[k]) for k in sorted(results)], len(cells))

    def record(i: int, result: dict[str, Any]) -> None:
        results[i] = result
        write()

    with RunLock(out, "benchmark"):  # creates OUT; a grid that fails before writing a thing removes it again
        todo = []
        for i, cell in enumerate(cells):
            result = finished(cell)
            if result is None:
                todo.append(i)
            else:
                notify(cell, "done")
                results[i] = result
        check_data([cells[i] for i in todo])
        if results:  # the cells finished before, tabled once
            write()
        if jobs == 1 or len(todo) < 2:
            for i in todo:
                notify(cells[i], "run")
                record(i, run_cell(cells[i], progress))
                notify(cells[i], "finished")
        else:
            _run_in_workers(cells, todo, jobs, notify, record)
    return [cell_row(cells[k], results[k]) for k in sorted(results)]


def _run_in_workers(cells: list[Cell], todo: list[int], jobs: int, notify, record) -> None:
    """Cells ``todo`` in ``jobs`` worker processes (spawned: no state shared with this one). A failed
    cell stops the queue: cells not yet started are dropped, the running ones finish and are tabled,
    then the error is raised. Ctrl-C stops every running cell at its last complete epoch and starts
    no other.

    The pool hands a worker a cell beyond those running (its call queue), which ``cancel_futures``
    cannot take back; so a ``stop`` event, shared with the workers, is checked by each before it
    starts a cell (a cell not started returns None: not run). A worker sets it itself when its cell
    fails or is interrupted, and this process on Ctrl-C, which it then passes on to its workers:
    a ``kill -INT`` of this process alone reaches no worker otherwise (a worker acts on the first
    SIGINT only, so the terminal's Ctrl-C to the whole group and this one stop it once)."""
    threads = max(1, torch.get_num_threads() // jobs)
    context = multiprocessing.get_context("spawn")
    stop = context.Event()
    with ProcessPoolExecutor(jobs, mp_context=context, initializer=_worker_init, initargs=(threads, stop)) as pool:
        futures, error = {}, None
        try:
            for i in todo:
                notify(cells[i], "queued")
                futures[pool.submit(_run_cell_in_worker, cells[i])] = i
            for future in as_completed(futures):
                i = futures[future]
                try:
                    result = future.result()
                except Exception as e:
                    error = e if error is None else error
                    continue
                if result is not None:
                    record(i, result)
                    notify(cells[i], "finished")
        except BaseException as e:  # Ctrl-C, or this process failed (writing the tables): start no other cell
            stop.set()
            if isinstance(e, KeyboardInterrupt):
                for worker in multiprocessing.active_children():
                    os.kill(worker.pid, signal.SIGINT)
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        if error is not None:
            raise error


PARENT_CHECK_SECONDS = 1.0
UNWIND_SECONDS = 5.0  # after the interrupt, before the orphan exits (its queue to the grid is gone)
_stop: Any = None  # in a worker: the grid's stop event (see _run_in_workers)


def _run_cell_in_worker(cell: Cell) -> dict[str, Any] | None:
    """``run_cell`` in a worker, unless the grid was stopped before the cell started (None: not run)."""
    signal.signal(signal.SIGINT, _interrupt_once)  # before the check: a SIGINT sent after stop was set
    try:
        if _stop.is_set():
            return None
        return run_cell(cell, False)
    except BaseException:
        _stop.set()  # a failed or interrupted cell stops the queue, before the grid process hears of it
        raise
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def _interrupt_once(signum: int, frame: Any) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise KeyboardInterrupt


def _worker_init(threads: int, stop: Any) -> None:
    """A worker's setup: its share of the threads, the grid's stop event, SIGINT ignored between
    cells, and a watch on the grid process. If the grid dies
    without stopping its workers (``kill``, a job scheduler's SIGTERM or SIGKILL, a closed terminal),
    the worker interrupts itself as Ctrl-C would, so its cell stops at its last complete epoch (a
    rerun of the grid resumes it) instead of training on, orphaned, beside the next grid; then it
    exits, since nobody is left to give it another cell. Checkpoints are written atomically, so
    an exit inside a save loses at most that epoch."""
    global _stop
    _stop = stop
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(threads)
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_CHECK_SECONDS)
        _stop.set()
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(UNWIND_SECONDS)
        os._exit(130)

    threading.Thread(target=watch, name="cavga-grid-parent-watch", daemon=True).start()


def _quiet(cell: Cell, status: str) -> None:
    return None
