"""A grid's results: every metric of every cell (results.csv, results.json) and results.md, tables
laid out like the paper's (categories or classes as rows, methods as columns, a mean row), each of
our numbers beside the paper's where the data set is the paper's (:mod:`cavga.paper_numbers`)."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

import numpy as np

from ..evaluate import METRIC_KEYS
from ..io_utils import atomic_write_json, atomic_write_text
from ..paper_numbers import PaperTable, tables_for
from ..report.benchmark_report import write_benchmark_report
from .spec import GridSpec, ModelSpec

METRIC_NAMES = {
    "iou": "IoU",
    "pixel_auroc": "pixel AUROC",
    "image_auroc": "image AUROC",
    "detection_accuracy": "detection accuracy",
    "aupro": "AUPRO",
    "f1_max": "pixel F1-max",
}
CSV_METRICS = (*METRIC_KEYS, "image_f1_max")


def cell_row(cell, result: dict[str, Any]) -> dict[str, Any]:
    """One cell's record for results.json/csv: its key, every metric, the baseline's, wall time."""
    metrics = {k: v for k, v in result.get("metrics", {}).items() if k != "undefined"}
    base = {k: v for k, v in (result.get("baseline_residual") or {}).items() if k != "undefined"}
    return {
        **cell.key(),
        "label": cell.model.label or cell.model.name,
        "variant": cell.cfg.model.variant,
        "epochs": cell.cfg.train.epochs,
        "file_epochs": cell.file_epochs,  # as the grid file gives them; epochs differ where the command line set them
        "run": str(cell.dir),
        "metrics": metrics,
        "baseline_residual": base,
        "pixel_ground_truth": result.get("pixel_ground_truth"),
        "wall_seconds": result.get("wall_seconds"),
        "fingerprint": (result.get("grid_cell") or {}).get("fingerprint"),
    }


def _values(rows: list[dict[str, Any]], model: str, dataset: str, category: str, metric: str) -> dict[int, float]:
    """seed -> value of ``metric`` for one (model, data set, category); undefined values left out."""
    out = {}
    for r in rows:
        if (r["model"], r["dataset"], r["category"]) == (model, dataset, category):
            v = r["metrics"].get(metric)
            if v is not None and not (isinstance(v, float) and math.isnan(v)):
                out[r["seed"]] = float(v)
    return out


def _fmt(values: list[float], decimals: int, paper: float | None, seeds: int | None = None) -> str:
    """The mean ± std of ``values``, "(2 of 3 seeds)" where they are fewer than the grid's ``seeds``, "(paper x)"."""
    if not values:
        text = "–"
    elif len(values) == 1:
        text = f"{values[0]:.{decimals}f}"
    else:
        text = f"{np.mean(values):.{decimals}f} ± {np.std(values, ddof=1):.{decimals}f}"
    if values and seeds is not None and len(values) != seeds:
        text += f" ({len(values)} of {seeds} seeds)"
    return text if paper is None else f"{text} (paper {paper:.{decimals}f})"


def _column(model: ModelSpec, table: PaperTable | None) -> str | None:
    if table is None:
        return None
    return next((c for c in model.paper if c in table.columns), None)


def markdown_table(
    rows: list[dict[str, Any]], dataset: str, categories: list[str], models: list[ModelSpec], metric: str,
    table: PaperTable | None = None, decimals: int = 3, seeds: int | None = None,
) -> str:  # fmt: skip
    """Categories as rows, ``models`` as columns, a mean row; "ours (paper x)" where ``table`` has x.

    A cell is the mean ± sample std over seeds; the mean row averages the categories within each
    seed first (seeds with every category), then over seeds. A cell over fewer than the grid's
    ``seeds`` says how many ("(2 of 3 seeds)"), the mean row's too."""
    decimals = table.decimals if table is not None else decimals
    head = ["category", *[m.label or m.name for m in models]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for cat in categories:
        cells = []
        for m in models:
            col = _column(m, table)
            paper = table.value(cat, col) if table is not None and col is not None else None
            cells.append(_fmt(list(_values(rows, m.name, dataset, cat, metric).values()), decimals, paper, seeds))
        lines.append(f"| {cat} | " + " | ".join(cells) + " |")
    same = table is None or len(categories) == table.mean_over
    label = "mean" if same else f"mean (ours: {len(categories)}; paper: {table.mean_over})"
    cells = []
    for m in models:
        per_cat = [_values(rows, m.name, dataset, c, metric) for c in categories]
        every = set.intersection(*(set(v) for v in per_cat)) if per_cat else set()  # seeds with every category
        means = [float(np.mean([v[s] for v in per_cat])) for s in sorted(every)]
        col = _column(m, table)
        cells.append(_fmt(means, decimals, table.value("mean", col) if table is not None and col else None, seeds))
    lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def markdown_report(spec: GridSpec, rows: list[dict[str, Any]], n_cells: int | None = None) -> str:
    """results.md: for each data set and metric, one table per paper table that has numbers for it
    (columns: the models with a column there), and one of the remaining models."""
    n_seeds = len(spec.seeds)
    out = [f"# Benchmark: {spec.name}", ""]
    done = f"{len(rows)} of {n_cells} cells" if n_cells is not None else f"{len(rows)} cells"
    spread = "mean ± sample std over seeds" if n_seeds > 1 else "one seed"
    out += [
        f"Grid `{spec.source}`; {done} finished{_epochs_clause(rows)}; seeds {', '.join(map(str, spec.seeds))} "
        f"({spread}). The paper's "
        'numbers are from Venkataramanan et al., ECCV 2020 (cavga.paper_numbers), beside ours as "(paper x)".',
        "",
    ]
    for ds in spec.datasets:
        cats = [ds.row(c) for c in ds.categories]
        for metric in ds.metrics:
            name = METRIC_NAMES.get(metric, metric)
            tables = tables_for(ds.paper, metric)
            placed: set[str] = set()
            for t in tables:
                models = [m for m in spec.models if _column(m, t) is not None]
                if not models:
                    continue
                models.sort(key=lambda m: t.columns.index(_column(m, t)))
                placed |= {m.name for m in models}
                out += [f"## {ds.name}: {name} — {t.table} ({t.caption})", ""]
                out += [markdown_table(rows, ds.name, cats, models, metric, t, seeds=n_seeds), ""]
            rest = [m for m in spec.models if m.name not in placed]
            if rest:
                why = " (no paper numbers)" if tables else ""
                decimals = tables[0].decimals if tables else 3
                out += [f"## {ds.name}: {name}{why}", ""]
                out += [markdown_table(rows, ds.name, cats, rest, metric, decimals=decimals, seeds=n_seeds), ""]
    return "\n".join(out)


def _epochs_summary(rows: list[dict[str, Any]], key: str) -> str:
    """``rows``' ``key`` epochs: "2 epochs", or by data set (by data set and model where those differ),
    e.g. "30 epochs (digits), 5 epochs (mnist)"."""
    by_ds: dict[str, dict[str, int]] = {}
    for r in rows:
        by_ds.setdefault(r["dataset"], {})[r.get("label") or r["model"]] = r[key]
    groups: dict[int, list[str]] = {}
    for ds, models in by_ds.items():
        if len(set(models.values())) == 1:
            groups.setdefault(next(iter(models.values())), []).append(ds)
        else:
            for label, n in models.items():
                groups.setdefault(n, []).append(f"{ds} {label}")
    if len(groups) == 1:
        return _epochs(next(iter(groups)))
    return ", ".join(f"{_epochs(n)} ({', '.join(where)})" for n, where in groups.items())


def _epochs(n: int) -> str:
    return f"{n} epoch" + ("" if n == 1 else "s")


def _epochs_clause(rows: list[dict[str, Any]]) -> str:
    """The header's "; trained 2 epochs (set on the command line; the grid file gives 10 epochs)": the
    epochs the finished cells ran with, which a grid file's title or sections may not say (``--epochs``, ``--set``)."""
    rows = [r for r in rows if r.get("epochs") is not None]
    if not rows:
        return ""
    ran = _epochs_summary(rows, "epochs")
    if all(r.get("file_epochs") in (None, r["epochs"]) for r in rows):
        return f"; trained {ran}"
    given = _epochs_summary([r for r in rows if r.get("file_epochs") is not None], "file_epochs")
    return f"; trained {ran} (set on the command line; the grid file gives {given})"


def results_csv(rows: list[dict[str, Any]]) -> str:
    """One line per cell: its key, every metric, the residual baseline's, train wall seconds, folder."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["model", "dataset", "category", "seed", *CSV_METRICS,
                *[f"baseline_residual.{k}" for k in CSV_METRICS], "train_seconds", "fingerprint", "run"])  # fmt: skip
    for r in rows:
        m, b = r["metrics"], r["baseline_residual"]
        wall = (r.get("wall_seconds") or {}).get("train_this_call")
        ours = ["" if m.get(k) is None else m[k] for k in CSV_METRICS]
        base = ["" if b.get(k) is None else b[k] for k in CSV_METRICS]
        key = [r["model"], r["dataset"], r["category"], r["seed"]]
        w.writerow([*key, *ours, *base, "" if wall is None else wall, r.get("fingerprint") or "", r["run"]])
    return buf.getvalue()


def write_results(out: Path, spec: GridSpec, rows: list[dict[str, Any]], n_cells: int | None = None) -> None:
    """OUT/results.json, results.csv and results.md, each written atomically."""
    from ..benchmark import environment

    atomic_write_json(out / "results.json", {"grid": spec.to_dict(), "environment": environment(), "cells": rows})
    atomic_write_text(out / "results.csv", results_csv(rows))
    atomic_write_text(out / "results.md", markdown_report(spec, rows, n_cells) + "\n")
    write_benchmark_report(out, *_page_rows(spec, rows))


def _page_rows(spec: GridSpec, rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, dict[str, float]]]:
    """The grid's cells as rows of the benchmark page (one per cell, linking its run page) and the
    paper's number for each cell and metric where the paper has one."""
    models = {m.name: m for m in spec.models}
    datasets = {d.name: d for d in spec.datasets}
    page, paper = [], {}
    for r in rows:
        name = f"{r['label']} · {r['dataset']} {r['category']} · seed {r['seed']}"
        page.append({"model": name, "run": r["run"], "metrics": r["metrics"], "wall_seconds": r.get("wall_seconds")})
        ds, m = datasets.get(r["dataset"]), models.get(r["model"])
        if ds is None or m is None:
            continue
        for metric in r["metrics"]:
            for t in tables_for(ds.paper, metric):
                col = _column(m, t)
                v = t.value(r["category"], col) if col is not None else None
                if v is not None:
                    paper.setdefault(name, {}).setdefault(metric, v)
    return page, paper
