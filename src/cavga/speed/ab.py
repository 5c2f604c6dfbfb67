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
from ..config import VARIANTS, RunConfig
from ..io_utils import atomic_write_json
from ..networks import CAVGA, build_networks
from .bench import _batch, _config, environment
from .flops import matmul_peak
from .measure import training_call


def at_least(least: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < least:
            raise argparse.ArgumentTypeError(f"{value}: must be {least} or more")
        return value

    return parse


def image_size(text: str) -> int:
    size = at_least(32)(text)
    if size & (size - 1):
        raise argparse.ArgumentTypeError(f"{size}: image sizes are powers of two >= 32")
    return size


def _variants(text: str) -> str:
    bad = [v for v in text.split(",") if v not in VARIANTS]
    if bad:
        raise argparse.ArgumentTypeError(f"{','.join(bad)}: choose from {', '.join(VARIANTS)}")
    return text


def parser(description: str, variants: str, repeats: int, out: str) -> argparse.ArgumentParser:
    """--variants, --size, --batch, --repeats, --threads, --out, with a script's defaults (each
    checked as it is parsed: a bad one is an argparse error before anything is timed)."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--variants", type=_variants, default=variants)
    ap.add_argument("--size", type=image_size, default=128)
    ap.add_argument("--batch", type=at_least(1), default=16)
    ap.add_argument("--repeats", type=at_least(1), default=repeats, help="timed rounds (the median is kept)")
    ap.add_argument("--threads", type=at_least(1), default=2)
    ap.add_argument("--out", default=out)
    return ap


def training_setup(
    variant: str, args: Any, channels_last: bool = False, bf16: bool = False
) -> tuple[RunConfig, CAVGA, torch.Tensor, Callable[[], object]]:
    """A variant at ``args``' size and batch on the CPU, built from seed 0 (random encoder weights:
    the same arithmetic as ImageNet ones), in either layout, in float32 or under bf16 autocast
    (``train.bf16``): its config, model, synthetic batch (B, 3, S, S) and a full training-step call."""
    cpu = torch.device("cpu")
    cfg = _config(variant, args.size, args.batch)
    torch.manual_seed(0)
    model, disc = build_networks(cfg.model, args.size, allow_random_init=True)
    accel = Accel(cpu, torch.bfloat16 if bf16 else None, channels_last=channels_last)
    accel.prepare(model, disc)
    x, labels = _batch(cfg, cpu, accel, 0)  # (B, 3, S, S), (B,)
    return cfg, model, x, training_call(model, disc, cfg, x, labels, accel.autocast)


def prediction_setup(variant: str, args: Any) -> tuple[RunConfig, CAVGA, torch.Tensor]:
    """A variant at ``args``' size and batch on the CPU, built from seed 0 (random weights), for a
    predictor: its config, model and a synthetic batch (B, 3, S, S)."""
    cfg = _config(variant, args.size, args.batch)
    torch.manual_seed(0)
    model, _ = build_networks(cfg.model, args.size, allow_random_init=True)
    return cfg, model, torch.rand(args.batch, 3, args.size, args.size)


ROUNDS: list[dict[str, list[float]]] = []  # each alternate()'s seconds per round, in order; start() clears it


def alternate(calls: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median seconds of each call over ``repeats`` rounds, the calls taking turns (the order
    reversed every other round); one untimed round first, to warm up. Every round's seconds go
    to ``ROUNDS`` too (written beside the medians: is a difference more than the noise?)."""
    if repeats < 1:
        raise ValueError(f"repeats {repeats}: a median of no rounds is undefined")
    seconds: dict[str, list[float]] = {name: [] for name in calls}
    names = list(calls)
    for r in range(repeats + 1):
        for name in names if r % 2 == 0 else names[::-1]:
            t0 = time.perf_counter()
            calls[name]()
            if r:
                seconds[name].append(time.perf_counter() - t0)
    ROUNDS.append(seconds)
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
    ROUNDS.clear()
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
    and after, the machine, ``rows`` and every timed round (``ROUNDS``); prints where it went."""
    result = {
        "size": args.size,
        "batch": args.batch,
        "threads": args.threads,
        "repeats": args.repeats,
        "matmul_peak_fp32_gflop_s": [round(p, 2) for p in peaks],
        "environment": environment(),
        "rows": rows,
        # every round's seconds of each comparison the medians in ``rows`` came from, in the order they ran
        "seconds_per_round": [{k: [round(t, 5) for t in v] for k, v in r.items()} for r in ROUNDS],
    }
    path = atomic_write_json(path, result)
    print(f"\nwritten: {path}")
    return path
