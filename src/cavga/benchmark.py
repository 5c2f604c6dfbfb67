"""`cavga benchmark`: train and evaluate several variants on one data set, one table.
(`cavga benchmark --grid FILE.yaml`, models x categories x seeds, is :mod:`cavga.grid`.)

Each variant trains into ``OUT/<variant>`` (resuming if it was interrupted), is evaluated on its
own test split, and the table (CAVGA rows beside the residual baseline measured in the same
forward pass) is printed and written as ``OUT/results.json`` and ``OUT/results.md`` with the
command line, wall times and split, and shown on the page ``OUT/report.html``.
"""

from __future__ import annotations

import copy
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch

from .config import RunConfig, resolved
from .evaluate import evaluate_run, format_table
from .io_utils import atomic_write_json, atomic_write_text, refuse_foreign, table_files
from .networks import build_networks
from .report import write_benchmark_report
from .report.benchmark_report import WALL_LABEL, wall_text
from .runtime import CHECKPOINT
from .train import train

OUTPUTS = ("results.md", "report.html")  # written with results.json


def run_benchmark(
    base: RunConfig, variants: list[str], out_dir: str | Path, progress: bool = True
) -> list[dict[str, Any]]:
    """Train + evaluate each variant with ``base`` (variant swapped in); write the tables."""
    out_dir = Path(out_dir)
    refuse_foreign(table_files(out_dir, "results.json", {"environment", "results"}, OUTPUTS), "benchmark")
    configs = {variant: _variant_config(base, variant, out_dir / variant) for variant in variants}
    results = []
    for variant, cfg in configs.items():
        run_dir = out_dir / variant
        t0 = time.perf_counter()
        resumed = (run_dir / CHECKPOINT).exists()
        train(cfg, run_dir, resume=resumed, progress=progress)
        t_train = time.perf_counter() - t0
        result = evaluate_run(run_dir, device=cfg.train.device, progress=progress)
        # "total": this call's training and evaluation; a resumed run's earlier training is not in it
        total = round(time.perf_counter() - t0, 1)
        result["wall_seconds"] = {"train_this_call": round(t_train, 1), "total": total, "resumed": resumed}
        results.append(result)
        _write(out_dir, results)
    return results


def _variant_config(base: RunConfig, variant: str, run_dir: Path) -> RunConfig:
    """``base`` with ``variant`` swapped in, checked; a CAVGA variant still to start has its networks
    built once now, so that what it lacks (a backbone's ImageNet weights, offline) is said before any variant
    trains, not after the ones before it have."""
    cfg = copy.deepcopy(base)
    cfg.model.variant = variant
    cfg.validate()
    # a started run resumes from its checkpoint's weights; a baseline (AE, PatchCore) builds its own networks
    if not cfg.model.is_baseline and not (run_dir / CHECKPOINT).exists():
        ready = resolved(cfg)
        build_networks(ready.model, ready.data.image_size, ready.train.allow_random_init)
    return cfg


def environment() -> dict[str, Any]:
    """The command line and the software and hardware a benchmark ran on."""
    return {
        "command": " ".join(["cavga", *sys.argv[1:]]) if sys.argv and "cavga" in sys.argv[0] else None,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def _write(out_dir: Path, results: list[dict[str, Any]], paper: dict[str, dict[str, float]] | None = None) -> None:
    atomic_write_json(out_dir / "results.json", {"environment": environment(), "results": results})
    lines = [
        format_table(results),
        "",
        f"| model | {WALL_LABEL} | n_train | n_test | per-defect IoU |",
        "|---|---|---|---|---|",
    ]
    for r in results:
        s = r["split"]
        per = ", ".join(f"{k} {v:.2f}" for k, v in r["per_defect_iou"].items())
        lines.append(f"| {r['model']} | {wall_text(r)} | {s['n_train']} | {s['n_test']} | {per} |")
    atomic_write_text(out_dir / "results.md", "\n".join(lines) + "\n")
    write_benchmark_report(out_dir, results, paper)
