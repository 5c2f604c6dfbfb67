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
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import ADDED, RunConfig, apply_overrides, from_dict, load_config, resolved, to_dict
from ..data import load_split
from ..errors import CavgaError
from ..evaluate import METRICS_FILE, evaluate_run
from ..io_utils import atomic_write_json, check_output_folder, refuse_foreign, table_files
from ..redecide import infer_settings, redecide_in_place
from ..report.run_report import REPORT_DIR, build_run_report
from ..runfolder import completed_epochs, same_folder
from ..runlock import RunLock
from ..runtime import CHECKPOINT
from ..train import train
from .spec import DatasetSpec, GridSpec, ModelSpec, set_values
from .workers import run_in_workers

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


def cell_keys(spec: GridSpec) -> dict[str, str]:
    """The keys that say which cell a cell is, each with the grid file's place that sets it: its data set,
    category, seed and model (a model entry's overrides included: c1 is Ru without L_ae), not
    ``train.epochs``, which results.md reports where the command line set it."""
    keys = {"data.root": "data", "data.layout": "data", "data.category": "categories"}
    keys |= {"data.seed": "seeds", "train.seed": "seeds", "model.variant": "models"}
    for m in spec.models:
        keys |= {k: f"model {m.name}'s overrides" for k in m.overrides if k not in keys and k != "train.epochs"}
    return keys


def build_cells(spec: GridSpec, out: str | Path, overrides: dict[str, Any] | None = None, sets: list[str] | None = None,
                validate: bool = True) -> list[Cell]:  # fmt: skip
    """Every cell of ``spec`` in run order (data set, category, seed, model); ``overrides`` (dotted keys,
    None: unset) and ``sets`` (``section.key=value``) apply to every cell last, except to a key of
    :func:`cell_keys` (an error: ``--set data.category=1`` would train category 1 in every row)."""
    out = Path(out)
    taken = cell_keys(spec)
    given = [(key, f"--set {key}") for key in (item.partition("=")[0].strip() for item in sets or [])]
    given += [(k, k) for k, v in (overrides or {}).items() if v is not None]  # a flag's: the CLI names the flag
    for key, name in given:
        if key in taken:
            raise CavgaError(
                f"{name}: cannot be combined with --grid {spec.source}: the grid file sets it ({taken[key]})"
            )
    several = len(spec.datasets) > 1
    cells = []
    for ds in spec.datasets:
        for category in ds.categories:
            for seed in spec.seeds:
                for m in spec.models:
                    cfg = from_dict(copy.deepcopy(spec.sections), spec.source)
                    try:
                        set_values(cfg, {f"data.{k}": v for k, v in ds.data.items()})
                        set_values(cfg, ds.overrides)
                        set_values(cfg, {"model.variant": m.variant, **m.overrides})
                        set_values(cfg, {"data.category": category, "data.seed": seed, "train.seed": seed})
                    except CavgaError as e:
                        raise CavgaError(f"{spec.source}: model {m.name}: {e}") from None
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
    training); its metrics.json is then stamped with the cell's fingerprint. A run without a report page
    as new as its metrics.json (``evaluate(report=False)``, or a grid cell stopped between the two) has
    it written from its scores.json first; where that fails (an evaluation stopped before its scores)
    the run is not adopted: the grid evaluates it again."""
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
    page = cell.dir / REPORT_DIR / "index.html"
    if not page.is_file() or page.stat().st_mtime < (cell.dir / METRICS_FILE).stat().st_mtime:
        try:
            with RunLock(cell.dir, "benchmark"):
                build_run_report(cell.dir)
        except CavgaError:
            return None
    result["grid_cell"] = {**cell.key(), "fingerprint": fp, "resumed": False, "adopted": True}
    atomic_write_json(cell.dir / METRICS_FILE, result)
    return result


def _take_renamed(cell: Cell, taken: set[Path]) -> None:
    """Move into a cell's missing folder the run it has under the grid's other folder names: a data set
    added to a grid of one (``OUT/<model>/<row>`` becomes ``OUT/<model>/<dataset>-<row>``), removed,
    or renamed. Only a folder of no other cell whose saved configuration is the cell's, up to the
    epochs and inference settings (which a rerun resumes and evaluates anew as in the cell's own folder)."""
    if cell.dir.exists():
        return
    for old in sorted(cell.dir.parent.parent.glob(f"*/seed{cell.seed}")):
        row = old.parent.name
        if old in taken or not old.is_dir() or not (row == cell.row or row.endswith(f"-{cell.row}")):
            continue
        if not _same_run(old, cell):
            continue
        with RunLock(old, "benchmark", create=False):  # not while a `cavga train` writes into it
            cell.dir.parent.mkdir(parents=True, exist_ok=True)
            old.rename(cell.dir)
        if not any(old.parent.iterdir()):
            old.parent.rmdir()
        warnings.warn(f"{old}: moved to {cell.dir}: the same cell, named by the grid's data sets", stacklevel=3)
        return


def _same_run(folder: Path, cell: Cell) -> bool:
    """Whether the run in ``folder`` was started with ``cell``'s configuration, its epochs and infer settings apart."""
    try:
        saved = load_config(folder / "config.yaml", saved=True)
    except (OSError, CavgaError):
        return False
    if saved.data.root and cell.cfg.data.root and same_folder(saved.data.root, cell.cfg.data.root):
        saved.data.root = cell.cfg.data.root
    saved.train.epochs, saved.infer = cell.cfg.train.epochs, copy.deepcopy(cell.cfg.infer)
    return cell_fingerprint(saved) == cell_fingerprint(cell.cfg)


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
        todo, folders = [], {c.dir for c in cells}
        for i, cell in enumerate(cells):
            _take_renamed(cell, folders)
            result = finished(cell)
            if result is None:
                todo.append(i)
            else:
                notify(cell, "done")
                results[i] = result
        check_data([cells[i] for i in todo])
        if results or any((out / name).exists() for name in ("results.json", *GRID_OUTPUTS)):
            write()  # the cells finished before, tabled once, before any cell trains: no older grid's table stays
        if jobs == 1 or len(todo) < 2:
            for i in todo:
                notify(cells[i], "run")
                record(i, run_cell(cells[i], progress))
                notify(cells[i], "finished")
        else:
            run_in_workers(cells, todo, jobs, notify, record)
    return [cell_row(cells[k], results[k]) for k in sorted(results)]


def _quiet(cell: Cell, status: str) -> None:
    return None
