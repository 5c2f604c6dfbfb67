"""Prediction speed with the batch laid out channels_last (cavga's default) against contiguous NCHW.

Both layouts are timed alternately in one process, so drift in the machine's speed falls on both:
``Predictor.predict_batch`` on a synthetic batch (random weights: the same arithmetic as trained
ones), the median of ``--repeats`` calls each.  Prints a table and writes JSON.

    OMP_NUM_THREADS=2 PYTHONPATH=src python benchmarks/inference_layout.py
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import torch

import cavga.inference as inference
from cavga.networks import build_networks
from cavga.speed.bench import _config
from cavga.speed.flops import matmul_peak
from cavga.speed.measure import synthetic_predictor
from cavga.speed.report import write_comparison

LAYOUTS = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", default="Du,Ru,Dw,Rw")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="benchmarks/results/speed/inference_layout.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message="this CAVGA-w run stored no held-out")  # synthetic normaliser
    cpu = torch.device("cpu")
    rows = []
    peak_before = matmul_peak(cpu, torch.float32) / 1e9
    for variant in args.variants.split(","):
        cfg = _config(variant, args.size, args.batch)
        torch.manual_seed(0)
        model, _ = build_networks(cfg.model, args.size, allow_random_init=True)
        predictor = synthetic_predictor(model, cfg, cpu)
        x = torch.rand(args.batch, 3, args.size, args.size)  # (B, 3, S, S)
        seconds: dict[str, list[float]] = {name: [] for name in LAYOUTS}
        for r in range(args.repeats + 1):  # the first round warms up
            for name, fmt in LAYOUTS.items():
                inference.MEMORY_FORMAT = fmt
                t0 = time.perf_counter()
                predictor.predict_batch(x)
                if r:
                    seconds[name].append(time.perf_counter() - t0)
        inference.MEMORY_FORMAT = torch.channels_last
        ips = {name: args.batch / statistics.median(s) for name, s in seconds.items()}
        rows.append(
            {
                "variant": variant,
                "contiguous_images_per_s": round(ips["contiguous"], 2),
                "channels_last_images_per_s": round(ips["channels_last"], 2),
                "speedup": round(ips["channels_last"] / ips["contiguous"], 3),
            }
        )
    peak_after = matmul_peak(cpu, torch.float32) / 1e9
    print(
        f"fp32 matmul peak {peak_before:.1f} GFLOP/s before, {peak_after:.1f} after; "
        f"{args.size} px, batch {args.batch}, {args.threads} threads\n"
    )
    print("| model | contiguous img/s | channels_last img/s | speed-up |")
    print("|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['variant']} | {r['contiguous_images_per_s']} | {r['channels_last_images_per_s']} | x{r['speedup']} |"
        )
    write_comparison(args.out, args, (peak_before, peak_after), rows)


if __name__ == "__main__":
    main()
