"""The speed benchmark: training and inference throughput, memory, FLOPs by part, and the fraction
of the machine's own measured matmul peak each achieves (``run_speed``; benchmarks/speed.py)."""

from __future__ import annotations

import os
import platform
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from ..accel import Accel
from ..config import VARIANTS, RunConfig, resolved
from ..errors import CavgaError
from ..networks import build_networks
from .flops import MatmulProbe, count_flops, fp32_tf32, matmul_peak, step_flops_by_part
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
    # the block's rise above its start (weights, optimiser state and batch excluded): CUDA's max
    # allocated minus the allocated at the start; a CPU's peak resident set minus the resident at the start
    peak_memory_rise_mb: float | None
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
    """A resolved config of CAVGA ``variant`` (Du, Ru, Dw, Rw: no baseline) at ``size`` and ``batch``."""
    if variant not in VARIANTS:
        raise CavgaError(f"variant {variant!r}: the speed benchmark measures {', '.join(VARIANTS)} only")
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
        peak_memory_rise_mb=None if timing.peak_memory_mb is None else round(timing.peak_memory_mb, 1),
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
        "load_average_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
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


DEVICES = ("cpu", "cuda")


def _sizes_error(flag: str, sizes: tuple[int, ...]) -> str | None:
    bad = [s for s in sizes if not isinstance(s, int) or s < 32 or s & (s - 1)]
    return f"{flag} {','.join(map(str, bad))}: image sizes are powers of two >= 32 (32, 64, 128, ...)" if bad else None


def check_options(opts: SpeedOptions) -> None:
    """Raise CavgaError naming the first option ``run_speed`` could not measure (checked before any
    measurement, so that no finished row is thrown away by a bad value found later)."""
    bad = [v for v in opts.variants if v not in VARIANTS]
    if bad or not opts.variants:
        raise CavgaError(f"--variants {','.join(bad) or '(none)'}: choose from {', '.join(VARIANTS)}")
    for flag, sizes in (("--sizes", opts.sizes), ("--sweep-sizes", opts.sweep_sizes)):
        if why := _sizes_error(flag, sizes):
            raise CavgaError(why)
    if not opts.sizes:
        raise CavgaError("--sizes: give at least one image size")
    for flag, values in (("--batch", (opts.batch,)), ("--sweep-batches", opts.sweep_batches)):
        if bad := [b for b in values if not isinstance(b, int) or b < 1]:
            raise CavgaError(f"{flag} {','.join(map(str, bad))}: batch sizes are 1 or more")
    if opts.steps < 1:
        raise CavgaError(f"--steps {opts.steps}: must be 1 or more (a median of no steps is NaN)")
    if opts.threads < 1:
        raise CavgaError(f"--threads {opts.threads}: must be 1 or more")
    if opts.warmup < 0:
        raise CavgaError(f"--warmup {opts.warmup}: must be 0 or more (untimed steps before the timed ones)")
    bad = [d for d in opts.devices if d not in DEVICES]
    if bad or not opts.devices:
        raise CavgaError(f"--devices {','.join(bad) or '(none)'}: choose from {', '.join(DEVICES)}")
    if opts.compile and opts.warmup < 1:
        raise CavgaError("--compile needs --warmup 1 or more: the first call compiles, and would be timed")


def available_devices(devices: tuple[str, ...]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``devices`` split into those this machine has and those it lacks (CUDA without a GPU)."""
    have = tuple(d for d in devices if d == "cpu" or torch.cuda.is_available())
    return have, tuple(d for d in devices if d not in have)


def run_speed(opts: SpeedOptions, progress=print, into: dict[str, Any] | None = None) -> dict[str, Any]:
    """The whole benchmark as a JSON-ready dict: per device its peaks, the grid of rows and the sweeps.

    Options are checked first (``check_options``); a CavgaError if none of ``opts.devices`` is
    here (those missing are listed under ``skipped_devices``). The result is built in ``into`` where
    given, row by row, so a caller still holds the finished rows, and an ``error`` entry naming the
    setting that failed, when a later one raises."""
    check_options(opts)
    have, skipped = available_devices(opts.devices)
    if not have:
        raise CavgaError(f"--devices {','.join(opts.devices)}: none is available here (torch sees no CUDA device)")
    torch.set_num_threads(opts.threads)
    out = into if into is not None else {}
    out.update(options=asdict(opts), environment=environment(), skipped_devices=list(skipped), devices={})
    if skipped:
        progress(f"skipped (not available here): {', '.join(skipped)}")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="this CAVGA-w run stored no held-out")  # the made-up normaliser
        for name in have:
            _run_device(torch.device(name), opts, progress, out)
    return out


def _run_device(device: torch.device, opts: SpeedOptions, progress, out: dict[str, Any]) -> None:
    name, cuda = str(device), device.type == "cuda"
    peaks = machine_peaks(device)
    progress(f"{name}: matmul peak " + ", ".join(f"{k} {v / 1e9:.1f} GFLOP/s" for k, v in peaks.items()))
    dev = out["devices"][name] = {
        "peak_gflop_s": {k: round(v / 1e9, 2) for k, v in peaks.items()},
        # what of the options applied here (bf16 and channels_last act on CUDA only)
        "applied": {"bf16": cuda and opts.bf16, "channels_last": cuda and opts.channels_last, "compile": opts.compile},
        # CUDA: the fp32 probes ran with TF32 as cuDNN's convolutions do (torch.backends.cudnn.allow_tf32)
        "fp32_peak_tf32": fp32_tf32(device),
        "rows": [],
        "sweep": [],
    }
    grid = [(v, s, opts.batch, True) for v in opts.variants for s in opts.sizes]
    grid += [("Du", s, opts.batch, False) for s in opts.sweep_sizes]
    grid += [("Du", 128, b, False) for b in opts.sweep_batches]
    for variant, size, batch, full in grid:
        try:
            row = measure_one(variant, size, batch, device, opts, peaks, inference=full)
        except BaseException as e:  # the rows done are kept (``into``); say which setting failed
            out["error"] = f"{name} {variant} {size} px batch {batch}: {type(e).__name__}: {e}"
            raise
        dev["rows" if full else "sweep"].append(asdict(row))
        progress(("" if full else "sweep ") + _line(row))
    peaks_after = machine_peaks(device)  # the machine is shared: did its limit move during the run?
    dev["peak_gflop_s_after"] = {k: round(v / 1e9, 2) for k, v in peaks_after.items()}


def _line(row: SpeedRow) -> str:
    t = row.train
    s = f"{row.variant} {row.image_size}px b{row.batch}: train {t.images_per_s:.1f} img/s ({t.fraction_of_peak:.0%})"
    if row.infer:
        s += f", infer {row.infer.images_per_s:.1f} img/s ({row.infer.fraction_of_peak:.0%})"
    return s
