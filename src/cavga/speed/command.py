"""The speed benchmark's command line, shared by ``cavga benchmark --speed`` and benchmarks/speed.py:
every option parsed and checked before the first measurement, then the report written (with the
rows done and an ``error`` entry, should a later row fail)."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from ..errors import CavgaError
from .bench import SpeedOptions, available_devices, check_options, run_speed
from .report import format_report, write_report

CLI_OUT = "speed-results"  # `cavga benchmark --speed`'s default folder, under the working directory
SCRIPT_OUT = "benchmarks/results/speed"  # benchmarks/speed.py's


def _ints(text: str) -> tuple[int, ...]:
    """``"128,256"`` as (128, 256); an argparse error for anything but comma-separated integers."""
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of integers") from None


def _names(text: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in text.split(",") if v.strip())


def speed_parser(prog: str, default_out: str, description: str | None = None) -> argparse.ArgumentParser:
    """The speed benchmark's options (SpeedOptions' defaults), ``--out`` defaulting to ``default_out``."""
    d = SpeedOptions()
    p = argparse.ArgumentParser(prog=prog, description=description)
    p.add_argument("--variants", type=_names, default=d.variants, help="comma list of Du,Ru,Dw,Rw (default all)")
    p.add_argument("--sizes", type=_ints, default=d.sizes, help="image sizes, powers of two >= 32 (default 128,256)")
    p.add_argument("--batch", type=int, default=d.batch, help="batch size (default 16)")
    p.add_argument(
        "--devices", type=_names, default=d.devices, help="cpu,cuda: a missing one is skipped, an error if all are"
    )
    p.add_argument("--warmup", type=int, default=d.warmup, help="untimed steps first (default 2)")
    p.add_argument("--steps", type=int, default=d.steps, help="timed steps; the median is reported (default 5)")
    p.add_argument("--threads", type=int, default=d.threads, help="CPU threads (default 2)")
    p.add_argument("--no-bf16", action="store_true", help="CUDA: train in fp32")
    p.add_argument("--no-channels-last", action="store_true", help="CUDA: keep the contiguous layout")
    p.add_argument(
        "--compile", action="store_true", help="torch.compile the decoder and discriminator (needs --warmup 1+)"
    )
    p.add_argument(
        "--sweep-sizes",
        type=_ints,
        default=d.sweep_sizes,
        help="image sizes of the size sweep: Du's training at --batch, whatever --sizes (default 64,128,256)",
    )
    p.add_argument(
        "--sweep-batches",
        type=_ints,
        default=d.sweep_batches,
        help="batch sizes of the batch sweep: Du's training at 128 px, whatever --sizes (default 4,8,16,32)",
    )
    p.add_argument(
        "--no-sweep", action="store_true", help="skip the size and batch sweeps (only --variants x --sizes run)"
    )
    p.add_argument(
        "--no-probe", action="store_true", help="fractions of the start's peak, not of the rate probed between steps"
    )
    p.add_argument(
        "--frozen",
        action="store_true",
        help="the defaults' set-up: encoders frozen, mu_energy (random weights stand in for the pretrained ones)",
    )
    p.add_argument(
        "--name",
        default=None,
        help="output file name in --out, no path; .json and .md are added (default speed-YYYYmmdd-HHMMSS)",
    )
    p.add_argument("--out", default=default_out, help=f"output folder (default {default_out})")
    p.add_argument("--overwrite", action="store_true", help="replace an existing NAME.json / NAME.md")
    return p


def options_from_args(a: argparse.Namespace) -> SpeedOptions:
    """SpeedOptions from ``speed_parser``'s namespace, checked (CavgaError naming the bad option)."""
    opts = SpeedOptions(
        variants=a.variants,
        sizes=a.sizes,
        batch=a.batch,
        devices=a.devices,
        warmup=a.warmup,
        steps=a.steps,
        threads=a.threads,
        bf16=not a.no_bf16,
        channels_last=not a.no_channels_last,
        compile=a.compile,
        sweep_sizes=() if a.no_sweep else a.sweep_sizes,
        sweep_batches=() if a.no_sweep else a.sweep_batches,
        probe_peak=not a.no_probe,
        frozen=a.frozen,
    )
    check_options(opts)
    return opts


def report_path(out: str | Path, name: str | None, overwrite: bool = False) -> Path:
    """``out/<name>.json`` (a trailing .json or .md of ``name`` dropped), checked before the run:
    ``out`` a folder (or creatable), ``name`` a file name (no path), and no earlier report there unless
    ``overwrite``."""
    if name and (os.sep in name or (os.altsep and os.altsep in name) or name in (".", "..")):
        raise CavgaError(f"--name {name}: give a file name, not a path (--out chooses the folder)")
    name = name or time.strftime("speed-%Y%m%d-%H%M%S")
    for suffix in (".json", ".md"):
        name = name.removesuffix(suffix)
    if not name:
        raise CavgaError("--name: empty")
    out = Path(out)
    for folder in (out, *out.parents):
        if folder.exists():
            if not folder.is_dir():
                raise CavgaError(f"--out {out}: {folder} is a file, not a folder")
            if not os.access(folder, os.W_OK):
                raise CavgaError(f"--out {out}: {folder} is not writable")
            break
    path = out / f"{name}.json"
    taken = [p for p in (path, path.with_suffix(".md")) if p.exists()]
    if taken and not overwrite:
        raise CavgaError(f"{taken[0]} exists: pass --overwrite to replace it, or another --name")
    return path


def speed_main(argv: list[str], prog: str, default_out: str, description: str | None = None, mixed: str = "") -> int:
    """Parse and check ``argv`` (argparse errors, exit 2, before anything is measured), run the
    benchmark and write ``out/<name>.json`` and ``.md``; on a failure part-way, those with the
    rows done and the error, then the exception goes on. ``mixed``: what an unknown option is told."""
    p = speed_parser(prog, default_out, description)
    a, extra = p.parse_known_args(argv)
    if extra:
        p.error(f"unrecognized arguments: {' '.join(extra)} ({mixed or '--help lists the speed options'})")
    try:
        opts = options_from_args(a)
        path = report_path(a.out, a.name, a.overwrite)
        if not available_devices(opts.devices)[0]:
            raise CavgaError(f"--devices {','.join(opts.devices)}: none is available here (torch sees no CUDA device)")
    except CavgaError as e:
        p.error(str(e))
    result: dict = {"command": " ".join([prog, *argv])}
    try:
        run_speed(opts, progress=lambda s: print(s, flush=True), into=result)
    except BaseException as e:
        result.setdefault("error", f"{type(e).__name__}: {e}")
        if result.get("devices"):
            write_report(result, path)
            done = f"{path} and {path.with_suffix('.md')}"
            print(f"stopped by an error; the rows done are written: {done}", file=sys.stderr)
        raise
    write_report(result, path)
    print(format_report(result))
    print(f"written: {path} and {path.with_suffix('.md')}")
    return 0
