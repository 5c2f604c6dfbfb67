"""A/B timing for the benchmark scripts that compare two ways of doing one thing
(benchmarks/inference_layout.py, train_layout.py, residual_block.py, adam_fused.py): their shared
command line and set-up, the two ways timed in turns in one process (so drift in the machine's
speed falls on both), and their JSON."""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ..accel import Accel
from ..config import RunConfig
from ..io_utils import atomic_write_json
from ..networks import CAVGA, build_networks
from .bench import _batch, _config, environment
from .flops import matmul_peak
from .measure import training_call


def parser(description: str, variants: str, repeats: int, out: str) -> argparse.ArgumentParser:
    """--variants, --size, --batch, --repeats, --threads, --out, with a script's defaults."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--variants", default=variants)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=repeats)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=out)
    return ap


def training_setup(
    variant: str, args: Any, channels_last: bool = False
) -> tuple[RunConfig, CAVGA, torch.Tensor, Callable[[], object]]:
    """A variant at ``args``' size and batch on the CPU, built from seed 0 (random encoder weights:
    the same arithmetic as ImageNet ones), in either layout: its config, model, synthetic batch
    (B, 3, S, S) and a full training-step call."""
    cpu = torch.device("cpu")
    cfg = _config(variant, args.size, args.batch)
    torch.manual_seed(0)
    model, disc = build_networks(cfg.model, args.size, allow_random_init=True)
    accel = Accel(cpu, None, channels_last=channels_last)
    accel.prepare(model, disc)
    x, labels = _batch(cfg, cpu, accel, 0)  # (B, 3, S, S), (B,)
    return cfg, model, x, training_call(model, disc, cfg, x, labels)


def prediction_setup(variant: str, args: Any) -> tuple[RunConfig, CAVGA, torch.Tensor]:
    """A variant at ``args``' size and batch on the CPU, built from seed 0 (random weights), for a
    predictor: its config, model and a synthetic batch (B, 3, S, S)."""
    cfg = _config(variant, args.size, args.batch)
    torch.manual_seed(0)
    model, _ = build_networks(cfg.model, args.size, allow_random_init=True)
    return cfg, model, torch.rand(args.batch, 3, args.size, args.size)


def alternate(calls: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median seconds of each call over ``repeats`` rounds, the calls taking turns (the order
    reversed every other round); one untimed round first, to warm up."""
    seconds: dict[str, list[float]] = {name: [] for name in calls}
    names = list(calls)
    for r in range(repeats + 1):
        for name in names if r % 2 == 0 else names[::-1]:
            t0 = time.perf_counter()
            calls[name]()
            if r:
                seconds[name].append(time.perf_counter() - t0)
    return {name: statistics.median(s) for name, s in seconds.items()}


def alternate_settings(
    apply: Callable[[Any], object], settings: dict[str, Any], call: Callable[[], object], repeats: int, restore: Any
) -> dict[str, float]:
    """:func:`alternate` of one ``call`` under each of ``settings`` (``apply(value)`` just before
    each call: a module global, a method); ``apply(restore)`` when done, whatever happens."""

    def under(value: Any) -> Callable[[], object]:
        def run() -> object:
            apply(value)
            return call()

        return run

    try:
        return alternate({name: under(value) for name, value in settings.items()}, repeats)
    finally:
        apply(restore)


def start(args: Any) -> float:
    """Threads as ``args`` asks, the synthetic normaliser's warning silenced; the fp32 matmul peak
    (GFLOP/s) before the timings."""
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message="this CAVGA-w run stored no held-out")  # synthetic normaliser
    return matmul_peak(torch.device("cpu"), torch.float32) / 1e9


def finish(args: Any, peak_before: float, rows: list[dict[str, Any]], table: list[str]) -> Path:
    """The fp32 matmul peak after the timings, then the settings and the peaks, the Markdown
    ``table`` lines, and the JSON (:func:`write_comparison`)."""
    peak_after = matmul_peak(torch.device("cpu"), torch.float32) / 1e9
    print(
        f"fp32 matmul peak {peak_before:.1f} GFLOP/s before, {peak_after:.1f} after; "
        f"{args.size} px, batch {args.batch}, {args.threads} threads\n"
    )
    print("\n".join(table))
    return write_comparison(args.out, args, (peak_before, peak_after), rows)


def write_comparison(path: str | Path, args: Any, peaks: tuple[float, float], rows: list[dict[str, Any]]) -> Path:
    """The script's JSON: its settings (``args`` from :func:`parser`), the fp32 matmul peak before
    and after, the machine and ``rows``; prints where it went."""
    result = {
        "size": args.size,
        "batch": args.batch,
        "threads": args.threads,
        "repeats": args.repeats,
        "matmul_peak_fp32_gflop_s": [round(p, 2) for p in peaks],
        "environment": environment(),
        "rows": rows,
    }
    path = atomic_write_json(path, result)
    print(f"\nwritten: {path}")
    return path
