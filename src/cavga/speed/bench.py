"""The speed benchmark: training and inference throughput, memory, FLOPs by part, and the fraction
of the machine's own measured matmul peak each achieves (``run_speed``; benchmarks/speed.py)."""

from __future__ import annotations

import os
import platform
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from ..accel import Accel
from ..config import RunConfig, resolved
from ..networks import build_networks
from .flops import MatmulProbe, count_flops, matmul_peak, step_flops_by_part
from .measure import synthetic_predictor, time_calls, training_call


@dataclass
class SpeedOptions:
    """What ``run_speed`` measures; the defaults are the issue's full grid."""

    variants: tuple[str, ...] = ("Du", "Ru", "Dw", "Rw")
    sizes: tuple[int, ...] = (128, 256)
    batch: int = 16
    devices: tuple[str, ...] = ("cpu", "cuda")  # devices this machine lacks are skipped
    warmup: int = 2
    steps: int = 5
    threads: int = 2  # CPU threads (torch.set_num_threads)
    bf16: bool = True  # CUDA: bf16 autocast in training
    channels_last: bool = True  # CUDA: channels_last models and batches
    compile: bool = False  # torch.compile the decoder and discriminator
    sweep_sizes: tuple[int, ...] = (64, 128, 256)  # Du at ``batch``: cost against image size
    sweep_batches: tuple[int, ...] = (4, 8, 16, 32)  # Du at 128 px: cost against batch size
    seed: int = 0
    # the pretrained encoders of the defaults where the weights are installed (cavga.config.resolve):
    # frozen, with mu_energy (CAVGA-D as after its distillation, which runs once before epoch 1 and
    # is not part of the step); off: every layer trains, the from-scratch step
    frozen: bool = False
    # each fraction of the matmul rate measured between that setting's timed steps (median), not
    # only the peak at the start of the run (still recorded): the machine's limit drifts
    probe_peak: bool = True


DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


@dataclass
class Measured:
    """Training or inference at one setting."""

    images_per_s: float
    ms_per_image: float
    peak_memory_mb: float | None
    gflop_per_image: float
    achieved_gflop_s: float
    fraction_of_peak: float  # achieved / the matmul peak of the dtype the arithmetic runs in
    peak_dtype: str
    peak_gflop_s: float | None = None  # that peak: the matmul rate measured between the timed steps (median)


@dataclass
class SpeedRow:
    variant: str
    device: str
    image_size: int
    batch: int
    train: Measured
    infer: Measured | None
    gflop_by_part: dict[str, float] = field(default_factory=dict)  # per image, training step


def _config(variant: str, size: int, batch: int, frozen: bool = False) -> RunConfig:
    cfg = RunConfig()
    cfg.model.variant = variant
    # SpeedOptions.frozen; else the from-scratch step of docs/performance.md: every layer trains
    cfg.model.encoder_init = "distill" if frozen and variant.startswith("D") else "dcgan"
    cfg.model.freeze_encoder = frozen
    cfg.model.backbone_weights = "none"  # random weights cost the same arithmetic as ImageNet ones
    cfg.train.allow_random_init = True
    cfg.data.image_size = size
    cfg.train.batch_size = cfg.infer.batch_size = batch
    return resolved(cfg).validate()


def _batch(cfg: RunConfig, device: torch.device, accel: Accel, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    b, s = cfg.train.batch_size, cfg.data.image_size
    x = accel.input(torch.rand(b, 3, s, s, generator=g))  # (B, 3, S, S)
    labels = torch.zeros(b, dtype=torch.long)  # (B,)
    if cfg.model.weakly_supervised:
        labels[-1] = 1  # CAVGA-w trains its classifier on a few anomalous images
    return x, labels.to(device)


def _measured(timing, gflop: float, peaks: dict[str, float], dtype: str) -> Measured:
    """The fraction is of the matmul rate probed between the timed steps where there is one (a shared
    machine's limit drifts, on the development machine by a third within one run: a rate measured
    minutes away makes a fraction read high or low by that much), else of ``peaks[dtype]``."""
    achieved = gflop * timing.images_per_s
    peak = timing.probe_median or peaks[dtype]
    return Measured(
        images_per_s=round(timing.images_per_s, 3),
        ms_per_image=round(1000 / timing.images_per_s, 2),
        peak_memory_mb=None if timing.peak_memory_mb is None else round(timing.peak_memory_mb, 1),
        gflop_per_image=round(gflop, 3),
        achieved_gflop_s=round(achieved, 2),
        fraction_of_peak=round(achieved / (peak / 1e9), 4),
        peak_dtype=dtype,
        peak_gflop_s=round(peak / 1e9, 2),
    )


def measure_one(
    variant: str,
    size: int,
    batch: int,
    device: torch.device,
    opts: SpeedOptions,
    peaks: dict[str, float],
    inference: bool = True,
) -> SpeedRow:
    """Training (and inference) speed of one variant at one image size and batch size on ``device``."""
    cuda = device.type == "cuda"
    accel = Accel(
        device,
        torch.bfloat16 if cuda and opts.bf16 else None,
        channels_last=cuda and opts.channels_last,
        compile=opts.compile,
    )
    cfg = _config(variant, size, batch, opts.frozen)
    torch.manual_seed(opts.seed)
    model, disc = build_networks(cfg.model, size, allow_random_init=True)
    accel.prepare(model, disc)
    x, labels = _batch(cfg, device, accel, opts.seed)
    with accel.autocast():
        parts = step_flops_by_part(model, disc, cfg, x, labels)
    step = training_call(model, disc, cfg, x, labels, accel.autocast)
    accel.compile_modules(model, disc)
    train_gflop = count_flops(step) / batch / 1e9
    train_dtype = "bf16" if accel.autocast_dtype is not None else "fp32"
    probes = {k: MatmulProbe(device, DTYPES[k]) for k in {train_dtype, "fp32"}} if opts.probe_peak else {}
    timing = time_calls(step, batch, device, opts.warmup, opts.steps, probes.get(train_dtype))
    train = _measured(timing, train_gflop, peaks, train_dtype)
    infer = None
    if inference:
        predictor = synthetic_predictor(model, cfg, device)
        call = lambda: predictor.predict_batch(x)  # noqa: E731 - score, map and mask of a batch
        infer_gflop = count_flops(call) / batch / 1e9
        timing = time_calls(call, batch, device, opts.warmup, opts.steps, probes.get("fp32"))
        infer = _measured(timing, infer_gflop, peaks, "fp32")
    return SpeedRow(variant, str(device), size, batch, train, infer, {k: round(v / 1e9, 3) for k, v in parts.items()})


def machine_peaks(device: torch.device) -> dict[str, float]:
    """Dense matmul FLOP/s on ``device``: fp32, and bf16 on CUDA."""
    peaks = {"fp32": matmul_peak(device, torch.float32)}
    if device.type == "cuda":
        peaks["bf16"] = matmul_peak(device, torch.bfloat16)
    return peaks


def environment() -> dict[str, Any]:
    return {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "processor": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "load_average_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def _cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def run_speed(opts: SpeedOptions, progress=print) -> dict[str, Any]:
    """The whole benchmark as a JSON-ready dict: per device its peaks, the grid of rows and the sweeps."""
    torch.set_num_threads(opts.threads)
    out: dict[str, Any] = {"options": asdict(opts), "environment": environment(), "devices": {}}
    for name in opts.devices:
        if name.startswith("cuda") and not torch.cuda.is_available():
            continue
        device = torch.device(name)
        peaks = machine_peaks(device)
        progress(f"{name}: matmul peak " + ", ".join(f"{k} {v / 1e9:.1f} GFLOP/s" for k, v in peaks.items()))
        rows, sweep = [], []
        for variant in opts.variants:
            for size in opts.sizes:
                row = measure_one(variant, size, opts.batch, device, opts, peaks)
                rows.append(asdict(row))
                progress(_line(row))
        for size in opts.sweep_sizes:
            row = measure_one("Du", size, opts.batch, device, opts, peaks, inference=False)
            sweep.append(asdict(row))
            progress("sweep " + _line(row))
        for batch in opts.sweep_batches:
            row = measure_one("Du", 128, batch, device, opts, peaks, inference=False)
            sweep.append(asdict(row))
            progress("sweep " + _line(row))
        out["devices"][name] = {
            "peak_gflop_s": {k: round(v / 1e9, 2) for k, v in peaks.items()},
            "rows": rows,
            "sweep": sweep,
        }
        peaks_after = machine_peaks(device)  # the machine is shared: did its limit move during the run?
        out["devices"][name]["peak_gflop_s_after"] = {k: round(v / 1e9, 2) for k, v in peaks_after.items()}
    return out


def _line(row: SpeedRow) -> str:
    t = row.train
    s = f"{row.variant} {row.image_size}px b{row.batch}: train {t.images_per_s:.1f} img/s ({t.fraction_of_peak:.0%})"
    if row.infer:
        s += f", infer {row.infer.images_per_s:.1f} img/s ({row.infer.fraction_of_peak:.0%})"
    return s
