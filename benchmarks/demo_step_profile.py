"""FLOPs by part and a torch.profiler table for the demo's training step (DEMO_SETTINGS), on the CPU.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/demo_step_profile.py [--disc 64,32,16] [--batch 16]

Prints GFLOP per image-step by part for each discriminator width (torch's flop counter), then the
seconds per step and the ten costliest operators of the demo's own step. No JSON: a diagnosis aid.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.profiler import ProfilerActivity, profile

from cavga.config import DEMO_SETTINGS, RunConfig, apply_overrides
from cavga.networks import build_networks
from cavga.speed.flops import step_flops_by_part
from cavga.step import make_optimizers, train_step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--disc", default="64,32,16", help="discriminator widths to count")
    ap.add_argument("--batch", type=int, default=16)
    args = ap.parse_args()
    x = torch.rand(args.batch, 3, 128, 128)  # (B, 3, S, S)
    labels = torch.zeros(args.batch, dtype=torch.long)
    for width in (int(w) for w in args.disc.split(",")):
        cfg = RunConfig()
        apply_overrides(cfg, {**DEMO_SETTINGS, "model.disc_channels": width})
        model, disc = build_networks(cfg.model, cfg.data.image_size)
        parts = step_flops_by_part(model, disc, cfg, x, labels)
        print(f"D width {width}: " + ", ".join(f"{k} {v / 1e9:.2f}" for k, v in parts.items()),
              f"total {sum(parts.values()) / 1e9:.2f} GFLOP per image-step")  # fmt: skip
    cfg = RunConfig()
    apply_overrides(cfg, DEMO_SETTINGS)
    model, disc = build_networks(cfg.model, cfg.data.image_size)
    opt_g, opt_d = make_optimizers(model, disc, cfg)
    for _ in range(2):  # warm-up
        train_step(model, disc, opt_g, opt_d, x, labels, cfg)
    t0 = time.perf_counter()
    for _ in range(3):
        train_step(model, disc, opt_g, opt_d, x, labels, cfg)
    step = (time.perf_counter() - t0) / 3
    print(f"demo step: {step:.2f} s at batch {args.batch}, {torch.get_num_threads()} thread(s)")
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(2):
            train_step(model, disc, opt_g, opt_d, x, labels, cfg)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=10))


if __name__ == "__main__":
    main()
