"""`cavga train --category all` (or ``a,b,c``): one model per MVTec category, in turn, one summary.

Each category trains into ``OUT/<category>`` (resuming an interrupted run) and is evaluated on its
own test split. A category whose run is finished (all epochs in its history, or stopped early by
``train.patience``, and a metrics.json written after its last checkpoint) is skipped, so the same
command continues an interrupted sweep. After every category ``OUT/summary.json`` and
``OUT/summary.md`` are rewritten.
"""

from __future__ import annotations

import copy
import json
import time
import warnings
from pathlib import Path
from typing import Any

from .check import painted_check
from .config import RunConfig, load_config, resolved, to_dict
from .data.listing import _check_root, _subfolders
from .errors import CavgaError
from .evaluate import METRIC_KEYS, METRICS_FILE, evaluate_run
from .io_utils import atomic_write_json, atomic_write_text, refuse_foreign, table_files
from .redecide import infer_settings, redecide_in_place
from .runfolder import SUMMARY, check_resumable, completed_epochs, history_done, stored_check
from .runtime import CHECKPOINT
from .train import train


def is_many(category: str | None) -> bool:
    """Whether ``--category`` asks for several categories ("all", or a comma list)."""
    return category is not None and (category.strip() == "all" or "," in category)


def resolve_categories(root: str | Path | None, spec: str) -> list[str]:
    """The categories ``spec`` names under an MVTec ``root``: "all" (each sub-folder with a train/
    folder) or a comma list, each of which must exist."""
    path = _check_root(root)
    found = [p.name for p in _subfolders(path) if (p / "train").is_dir()]
    if spec.strip() == "all":
        if not found:
            raise CavgaError(f"{path}: no categories found (sub-folders with a train/ folder)")
        return found
    asked = [c.strip() for c in spec.split(",") if c.strip()]
    missing = [c for c in asked if c not in found]
    if missing or not asked:
        listing = ", ".join(found) or "none"
        raise CavgaError(f"{path}: category {', '.join(missing) or '(none)'} not found (categories found: {listing})")
    return list(dict.fromkeys(asked))


def is_finished(run_dir: str | Path, cfg: RunConfig) -> bool:
    """A run whose history holds all of ``cfg``'s epochs (or stopped early by train.patience) and whose
    metrics.json is newer than its checkpoint and was evaluated under ``cfg``'s inference settings. A run
    started with other settings (the epochs, patience, device and infer.* apart) is refused, as
    ``--resume`` refuses it, rather than reported under these; so is one trained for more epochs."""
    run_dir = Path(run_dir)
    ckpt, metrics = run_dir / CHECKPOINT, run_dir / METRICS_FILE
    if not (ckpt.is_file() and metrics.is_file()):
        return False
    done = completed_epochs(run_dir)
    if done > cfg.train.epochs:  # its numbers are not those of the epochs asked for
        raise CavgaError(
            f"{run_dir}: trained for {done} epochs but the sweep asks for {cfg.train.epochs} (train.epochs); "
            "delete this category's folder to retrain it"
        )
    with warnings.catch_warnings():  # train warns about the settings it resolves, if it runs
        warnings.simplefilter("ignore")
        now = resolved(cfg)  # train.patience "auto" made concrete
    check_resumable({"config": to_dict(load_config(run_dir / "config.yaml", saved=True))}, now, run_dir)
    if not (history_done(run_dir, now) and metrics.stat().st_mtime >= ckpt.stat().st_mtime):
        return False
    return json.loads(metrics.read_text(encoding="utf-8")).get("infer") == to_dict(now)["infer"]


def train_categories(
    base: RunConfig, categories: list[str], out_dir: str | Path, progress: bool = True, on_done=None, check: bool = True
) -> list[dict[str, Any]]:
    """Train and evaluate ``base`` on each category into ``out_dir/<category>``; the summary rows.
    ``check``: each trained category gets the painted-defect check first (:func:`cavga.check.painted_check`)."""
    out_dir = Path(out_dir)
    summary = table_files(out_dir, f"{SUMMARY}.json", {"categories"}, (f"{SUMMARY}.md",))
    refuse_foreign(summary, "train --category")
    rows: list[dict[str, Any]] = []
    for category in categories:
        cfg = copy.deepcopy(base)
        cfg.data.layout, cfg.data.category = "mvtec", category
        run_dir = out_dir / category
        t0 = time.perf_counter()
        try:
            result, status, checked = _one_category(cfg, run_dir, progress, check)
        except CavgaError as e:  # this category's data or run is bad: said in its row, the others go on
            result, status, checked = {"metrics": {}}, f"failed: {e}", None
        rows.append(
            {
                "category": category,
                "status": status,
                "run": str(run_dir),
                "model": result.get("model"),
                "seconds": round(time.perf_counter() - t0, 1),
                "metrics": result.get("metrics", {}),
                "painted_pixel_auroc": checked["metrics"]["pixel_auroc"] if checked else None,  # the check's
            }
        )
        write_summary(out_dir, rows)
        if on_done:
            on_done(rows[-1])
    return rows


def _one_category(cfg: RunConfig, run_dir: Path, progress: bool, check: bool) -> tuple[dict[str, Any], str, Any]:
    """One category's metrics, status and painted-defect check: read back where it is finished, else
    trained (or resumed) and evaluated under ``cfg``'s inference settings."""
    if is_finished(run_dir, cfg):
        result = json.loads((run_dir / METRICS_FILE).read_text(encoding="utf-8"))
        return result, "skipped (finished)", stored_check(run_dir) if check else None
    resume = (run_dir / CHECKPOINT).exists()
    train(cfg.validate(), run_dir, resume=resume, progress=progress)
    # inference settings other than the run's: its auto ones decided again on its held-out normals
    infer = infer_settings(resolved(cfg))
    if resume:
        redecide_in_place(run_dir, infer, cfg.train.device)
    # the check before evaluate: a category counted as finished has its validation.json
    checked = painted_check(run_dir, cfg.train.device) if check else None
    return evaluate_run(run_dir, device=cfg.train.device, progress=progress, infer=infer), "trained", checked


def format_summary(rows: list[dict[str, Any]]) -> str:
    """One markdown row per category: one column per test metric, then the painted-defect check's
    pixel AUROC (held-out normals, no test image; the training's warning line is 0.7), and their mean
    ("mean (2 of 3)" where it leaves out categories without metrics, a failed one)."""
    head = [*METRIC_KEYS, "painted pixel_auroc"]
    lines = ["| category | status | " + " | ".join(head) + " |", "|---|---|" + "---|" * len(head)]

    def cell(v: Any) -> str:
        return "n/a" if v is None else f"{v:.3f}"

    def values(r: dict[str, Any]) -> list[Any]:
        return [r["metrics"].get(k) for k in METRIC_KEYS] + [r.get("painted_pixel_auroc")]

    for r in rows:
        lines.append(f"| {r['category']} | {r['status']} | " + " | ".join(cell(v) for v in values(r)) + " |")

    def mean(column: tuple[Any, ...]) -> float | None:
        known = [v for v in column if v is not None]
        return sum(known) / len(known) if known else None

    if len(rows) > 1:  # over the categories with metrics: a failed one has none
        n = sum(1 for r in rows if r["metrics"])
        label = "mean" if n == len(rows) else f"mean ({n} of {len(rows)})"
        means = " | ".join(cell(mean(c)) for c in zip(*map(values, rows), strict=True))
        lines.append(f"| {label} | | {means} |")
    return "\n".join(lines)


def write_summary(out_dir: Path, rows: list[dict[str, Any]]) -> None:
    atomic_write_json(out_dir / f"{SUMMARY}.json", {"categories": rows})
    atomic_write_text(out_dir / f"{SUMMARY}.md", format_summary(rows) + "\n")
