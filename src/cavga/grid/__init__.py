"""`cavga benchmark --grid FILE.yaml`: models x categories (or classes) x seeds, resumable, with the
paper's numbers beside ours. ``spec`` parses the YAML (and names Table 8's ablation models), ``run``
trains and evaluates the cells, ``report`` writes results.csv, results.json and results.md."""

from .report import markdown_report, markdown_table, results_csv, write_results
from .run import Cell, build_cells, cell_fingerprint, finished, progress_line, run_cell, run_grid
from .spec import ABLATION, NAMED_MODELS, DatasetSpec, GridSpec, ModelSpec, load_grid, parse_grid

__all__ = [
    "ABLATION",
    "NAMED_MODELS",
    "Cell",
    "DatasetSpec",
    "GridSpec",
    "ModelSpec",
    "build_cells",
    "cell_fingerprint",
    "finished",
    "load_grid",
    "markdown_report",
    "markdown_table",
    "parse_grid",
    "progress_line",
    "results_csv",
    "run_cell",
    "run_grid",
    "write_results",
]
