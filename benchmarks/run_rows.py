"""What the per-run diagnosis scripts (``residual_blur.py``, ``residual_mask.py``) share: a run's
stored metrics, and a ``main`` that prints one table row per run folder and writes all rows as
JSON. Trains and evaluates nothing itself."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

from cavga.io_utils import atomic_write_json, read_json


def stored_metrics(run: Path) -> dict | None:
    """The run's metrics.json as ``cavga evaluate`` wrote it, or None where it was never evaluated."""
    if not (run / "metrics.json").is_file():
        return None
    return read_json(run / "metrics.json", "run `cavga evaluate` first", "metrics")


def main_over_runs(
    doc: str,
    row_of: Callable[[Path], dict],
    line_of: Callable[[Path, dict], str],
    header: str | None = None,
    argv: list[str] | None = None,
) -> int:
    """Parse ``RUN... --out FILE``, print ``header`` and one ``line_of(run, row)`` per run as it is
    made, then write ``{"rows": [...], "seconds": ...}`` to FILE atomically."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    rows, started = [], time.time()
    if header:
        print(header)
    for run in args.runs:
        rows.append(row_of(run))
        print(line_of(run, rows[-1]), flush=True)
    atomic_write_json(args.out, {"rows": rows, "seconds": round(time.time() - started, 1)})
    return 0
