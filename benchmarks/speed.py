"""Speed benchmark (issue 11): training and inference images/s, peak memory and FLOPs per image of
CAVGA's variants, each as a fraction of this machine's dense matmul peak measured in the same run.

    OMP_NUM_THREADS=2 PYTHONPATH=src python benchmarks/speed.py                 # the full grid
    PYTHONPATH=src python benchmarks/speed.py --variants Du --sizes 128 --steps 3 --no-sweep

On CUDA the training step runs under bf16 autocast with channels_last (--no-bf16,
--no-channels-last to compare) and its fraction is of the measured bf16 peak. Writes
benchmarks/results/speed/<name>.json and .md; see docs/performance.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from cavga.speed import SpeedOptions, format_report, run_speed, write_report


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split(",") if v.strip())


def main(argv: list[str] | None = None) -> int:
    d = SpeedOptions()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--variants", default=",".join(d.variants), help="comma list of Du,Ru,Dw,Rw")
    p.add_argument("--sizes", default=",".join(map(str, d.sizes)), help="image sizes (default 128,256)")
    p.add_argument("--batch", type=int, default=d.batch, help="batch size (default 16)")
    p.add_argument("--devices", default=",".join(d.devices), help="cpu,cuda (missing ones are skipped)")
    p.add_argument("--warmup", type=int, default=d.warmup, help="untimed steps first (default 2)")
    p.add_argument("--steps", type=int, default=d.steps, help="timed steps; the median is reported (default 5)")
    p.add_argument("--threads", type=int, default=d.threads, help="CPU threads (default 2)")
    p.add_argument("--no-bf16", action="store_true", help="CUDA: train in fp32")
    p.add_argument("--no-channels-last", action="store_true", help="CUDA: keep the contiguous layout")
    p.add_argument("--compile", action="store_true", help="torch.compile the decoder and discriminator")
    p.add_argument("--sweep-sizes", default=",".join(map(str, d.sweep_sizes)), help="Du image sizes to sweep")
    p.add_argument("--sweep-batches", default=",".join(map(str, d.sweep_batches)), help="Du batch sizes to sweep")
    p.add_argument("--no-sweep", action="store_true", help="skip the size and batch sweeps")
    p.add_argument(
        "--no-probe", action="store_true", help="fractions of the start's peak, not of the rate probed between steps"
    )
    p.add_argument(
        "--frozen",
        action="store_true",
        help="the defaults' pretrained encoders: frozen, mu_energy (CAVGA-D as after its distillation)",
    )
    p.add_argument("--name", default=time.strftime("speed-%Y%m%d-%H%M%S"), help="output file name (no suffix)")
    p.add_argument("--out", default="benchmarks/results/speed", help="output folder")
    a = p.parse_args(argv)
    if a.steps < 1 or a.batch < 1 or a.warmup < 0:
        p.error("--steps and --batch must be 1 or more, --warmup 0 or more (a median of no steps is NaN)")
    opts = SpeedOptions(
        variants=tuple(v.strip() for v in a.variants.split(",") if v.strip()),
        sizes=_ints(a.sizes),
        batch=a.batch,
        devices=tuple(v.strip() for v in a.devices.split(",") if v.strip()),
        warmup=a.warmup,
        steps=a.steps,
        threads=a.threads,
        bf16=not a.no_bf16,
        channels_last=not a.no_channels_last,
        compile=a.compile,
        sweep_sizes=() if a.no_sweep else _ints(a.sweep_sizes),
        sweep_batches=() if a.no_sweep else _ints(a.sweep_batches),
        probe_peak=not a.no_probe,
        frozen=a.frozen,
    )
    result = run_speed(opts, progress=lambda s: print(s, flush=True))
    result["command"] = " ".join(["python", "benchmarks/speed.py", *(argv if argv is not None else sys.argv[1:])])
    path = write_report(result, Path(a.out) / f"{a.name}.json")
    print(format_report(result))
    print(f"written: {path} and {path.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
