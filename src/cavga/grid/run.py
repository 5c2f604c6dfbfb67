"""Running a grid: one train + evaluate per cell into ``OUT/<model>/<row>/seed<k>``, resumable.

A cell is finished when its ``metrics.json`` carries the cell's fingerprint (a hash of its whole
configuration, epochs and inference settings included; device and workers left out): a rerun skips
it. A cell with a checkpoint but no matching metrics continues its training (``train(resume=True)``)
and is evaluated again. The result tables are rewritten after every cell.
"""

from __future__ import annotations

import copy
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import RunConfig, apply_overrides, from_dict, load_config, to_dict
from ..errors import CavgaError
from ..evaluate import METRICS_FILE, evaluate_run
from ..io_utils import atomic_write_json, check_output_folder
from ..runfolder import completed_epochs
from ..runlock import RunLock
from ..runtime import CHECKPOINT
from ..train import train
from .spec import DatasetSpec, GridSpec, ModelSpec, set_values

NOT_IDENTITY = {"train": ("device", "num_workers")}  # settings that do not change a cell's result


@dataclass
class Cell:
    """One (model, data set, category, seed) of the grid, with its full configuration."""

    model: ModelSpec
    dataset: DatasetSpec
    category: str | None
    seed: int
    cfg: RunConfig
    dir: Path

    @property
    def row(self) -> str:
        return self.dataset.row(self.category)

    def key(self) -> dict[str, Any]:
        return {"model": self.model.name, "dataset": self.dataset.name, "category": self.row, "seed": self.seed}


def cell_fingerprint(cfg: RunConfig) -> str:
    """Hash of everything in ``cfg`` that can change a cell's result."""
    d = copy.deepcopy(to_dict(cfg))
    for section, keys in NOT_IDENTITY.items():
        for k in keys:
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
                    apply_overrides(cfg, overrides or {})
                    apply_overrides(cfg, list(sets or []))
                    row = ds.row(category)
                    folder = out / m.name / (f"{ds.name}-{row}" if several else row) / f"seed{seed}"
                    if validate:
                        try:
                            cfg.validate()
                        except CavgaError as e:
                            raise CavgaError(f"{spec.source}: model {m.name}: {e}") from None
                    cells.append(Cell(m, ds, category, seed, cfg, folder))
    return cells


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
        saved = load_config(cell.dir / "config.yaml")
        evaluated_after = (cell.dir / METRICS_FILE).stat().st_mtime >= (cell.dir / CHECKPOINT).stat().st_mtime
    except (OSError, CavgaError):
        return None
    fp = cell_fingerprint(cell.cfg)
    if cell_fingerprint(saved) != fp or not evaluated_after:
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
    train(cell.cfg, cell.dir, resume=resume, progress=progress)
    t_train = time.perf_counter() - t0
    result = evaluate_run(cell.dir, device=cell.cfg.train.device, progress=progress)
    result["wall_seconds"] = {
        "train_this_call": round(t_train, 1),
        "total_this_call": round(time.perf_counter() - t0, 1),
    }
    result["grid_cell"] = {**cell.key(), "fingerprint": cell_fingerprint(cell.cfg), "resumed": resume}
    atomic_write_json(cell.dir / METRICS_FILE, result)
    return result


def run_grid(
    spec: GridSpec,
    out: str | Path,
    overrides: dict[str, Any] | None = None,
    sets: list[str] | None = None,
    progress: bool = True,
    on_cell: Callable[[Cell, str], None] | None = None,
) -> list[dict[str, Any]]:
    """Run every cell not yet finished, writing OUT/results.{csv,json,md} after each; return the rows.

    ``on_cell(cell, status)`` is told "done" (skipped, finished before), "run" (about to start) and
    "finished" for each cell."""
    from .report import cell_row, write_results

    out = Path(out)
    check_output_folder(out)
    cells = build_cells(spec, out, overrides, sets)
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    with RunLock(out, "benchmark"):
        for cell in cells:
            result = finished(cell)
            if result is not None:
                (on_cell or _quiet)(cell, "done")
            else:
                (on_cell or _quiet)(cell, "run")
                result = run_cell(cell, progress)
                (on_cell or _quiet)(cell, "finished")
            rows.append(cell_row(cell, result))
            write_results(out, spec, rows, len(cells))
    return rows


def _quiet(cell: Cell, status: str) -> None:
    return None
