"""Timed training steps and predictions on synthetic batches, and the memory they take."""

from __future__ import annotations

import ctypes
import resource
import sys
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..config import RunConfig
from ..image_scores import Normalizer
from ..inference import Predictor
from ..networks import CAVGA, Discriminator
from ..step import make_optimizers, train_step
from .flops import _sync


@dataclass
class Timing:
    """Steady-state speed of one repeated call."""

    images_per_s: float
    seconds_per_step: float  # the median over the timed steps
    steps: int
    peak_memory_mb: float | None  # the block's rise: CUDA's max allocated (CPU: peak resident set) less the start
    probe_median: float | None = None  # the median of ``probe``'s values, one taken before each timed step


def _rss_kb(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _maxrss_kb() -> int:
    """getrusage's lifetime peak resident set in KB: Linux reports KB, macOS bytes."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak // 1024 if sys.platform == "darwin" else peak


def _return_freed_memory() -> None:
    """glibc keeps freed heap memory resident; ``malloc_trim`` hands it back (elsewhere: nothing)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class PeakMemory:
    """Peak memory of a block above its start: CUDA's max allocated bytes less those allocated at the
    start, or on a CPU the peak resident set size above the resident size at the start (Linux resets
    the peak through /proc/self/clear_refs; elsewhere the rise of getrusage's lifetime peak, which
    undercounts after a bigger run). Weights, optimiser state and the batch, there before, are not in it."""

    def __init__(self, device: torch.device):
        self.device = device
        self.mb: float | None = None

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.start = torch.cuda.memory_allocated(self.device)
            return self
        _return_freed_memory()  # memory an earlier measurement freed would hide this one's
        try:
            Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
            self.reset = True
        except OSError:
            self.reset = False
        self.start = _rss_kb("VmRSS") if self.reset else _maxrss_kb()
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.mb = (torch.cuda.max_memory_allocated(self.device) - self.start) / 2**20
        elif self.start is not None:
            peak = _rss_kb("VmHWM") if self.reset else _maxrss_kb()
            self.mb = max(peak - self.start, 0) / 1024 if peak is not None else None


def time_calls(
    fn: Callable[[], object],
    batch: int,
    device: torch.device,
    warmup: int,
    steps: int,
    probe: Callable[[], float] | None = None,
) -> Timing:
    """``fn`` called ``warmup`` times untimed, then ``steps`` times timed one by one (device synced);
    ``probe`` (untimed) before each timed call, e.g. the matmul rate, so that it sees the machine
    as the calls do."""
    with PeakMemory(device) as mem:
        for _ in range(warmup):
            fn()
        times, probed = [], []
        for _ in range(steps):
            if probe is not None:
                probed.append(probe())
            _sync(device)
            t0 = time.perf_counter()
            fn()
            _sync(device)
            times.append(time.perf_counter() - t0)
    median = float(np.median(times))
    return Timing(batch / median, median, steps, mem.mb, float(np.median(probed)) if probed else None)


def training_call(
    model: CAVGA,
    disc: Discriminator,
    cfg: RunConfig,
    x: Tensor,
    labels: Tensor,
    autocast: Callable[[], AbstractContextManager] = nullcontext,
) -> Callable[[], object]:
    """One full training step (D step, then G step with Grad-CAM's double backward) as a call."""
    opt_g, opt_d = make_optimizers(model, disc, cfg)
    class_weight = torch.tensor([0.6, 2.0], device=x.device) if cfg.model.weakly_supervised else None
    model.train()
    disc.train()

    def step() -> object:
        with autocast():
            return train_step(model, disc, opt_g, opt_d, x, labels, cfg, class_weight)

    return step


def synthetic_predictor(model: CAVGA, cfg: RunConfig, device: torch.device) -> Predictor:
    """A Predictor around ``model`` with a made-up normaliser (scores and thresholds are meaningless;
    the work done is that of a real run's)."""
    normalizer = Normalizer(0.0, 1.0, 0.95, 1, 1.0, [0.0], [float(v) for v in np.linspace(0, 1, 1001)])
    return Predictor(model, cfg, normalizer, device)
