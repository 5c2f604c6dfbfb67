"""The page of a benchmark grid: one row per run, the paper's numbers beside ours, links to each run's page."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .render import page_link, render_page
from .run_report import NAMES

REPORT_FILE = "report.html"
WALL_LABEL = "wall this call, train + evaluate (s)"


def wall_text(result: dict[str, Any]) -> str:
    """A result's wall time for a table: this call's training and evaluation, marked "resumed" where
    the run existed before (its earlier training, possibly all of it, is not counted)."""
    wall = result.get("wall_seconds") or {}
    total = wall.get("total", wall.get("total_this_call"))  # `--models`' key, the grid's
    if total is None:
        return ""
    resumed = wall.get("resumed", (result.get("grid_cell") or {}).get("resumed"))
    return f"{total}" + (" (resumed)" if resumed else "")


def write_benchmark_report(
    out_dir: str | Path,
    results: list[dict[str, Any]],
    paper: dict[str, dict[str, float]] | None = None,
) -> Path:
    """Write ``OUT_DIR/report.html``; return its path.

    ``results``: the dicts ``run_benchmark`` returns (``evaluate_run``'s results: ``model``, ``run``,
    ``metrics``, optionally ``wall_seconds``). ``paper``: the paper's numbers by model label and metric
    key (``{"CAVGA-Du": {"iou": 0.47, "pixel_auroc": 0.89}}``), shown beside ours where given."""
    out_dir = Path(out_dir)
    paper = paper or {}
    keys = list(NAMES)
    rows = []
    for r in results:
        run = Path(r["run"])
        page = run / "report" / "index.html"
        link = page_link(Path(os.path.relpath(page, out_dir)).as_posix()) if page.is_file() else None
        ours = r.get("metrics") or {}
        theirs = paper.get(r["model"], {})
        rows.append(
            {
                "model": r["model"],
                "run": str(run),
                "link": link,
                "cells": [(ours.get(k), theirs.get(k)) for k in keys],
                "wall": wall_text(r) or None,
            }
        )
    return render_page(
        "benchmark.html.j2",
        out_dir / REPORT_FILE,
        columns=[NAMES[k] for k in keys],
        keys=keys,
        rows=rows,
        with_paper=bool(paper),
        wall_label=WALL_LABEL,
    )
