"""Training-step time with contiguous NCHW against channels_last models and batches, on this CPU.

The median of three steps after one warm-up, per variant and layout (random encoder weights: the
same arithmetic as ImageNet ones).  The measurement behind keeping CPU training contiguous
(cavga.accel; docs/performance.md).

    OMP_NUM_THREADS=2 PYTHONPATH=src python benchmarks/train_layout.py --variants Du,Rw
"""

from __future__ import annotations

import argparse
import statistics
import time
from contextlib import nullcontext

import torch

from cavga.accel import Accel
from cavga.networks import build_networks
from cavga.speed.bench import _batch, _config
from cavga.speed.measure import training_call


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", default="Du,Rw")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cpu = torch.device("cpu")
    for variant in args.variants.split(","):
        ms = {}
        for channels_last in (False, True):
            cfg = _config(variant, args.size, args.batch)
            torch.manual_seed(0)
            model, disc = build_networks(cfg.model, args.size, allow_random_init=True)
            accel = Accel(cpu, None, channels_last=channels_last)
            accel.prepare(model, disc)
            x, labels = _batch(cfg, cpu, accel, 0)
            step = training_call(model, disc, cfg, x, labels, nullcontext)
            step()
            times = []
            for _ in range(3):
                t0 = time.perf_counter()
                step()
                times.append(time.perf_counter() - t0)
            ms["channels_last" if channels_last else "contiguous"] = 1000 * statistics.median(times)
        print(
            f"{variant}: train step (batch {args.batch}) contiguous {ms['contiguous']:.0f} ms, "
            f"channels_last {ms['channels_last']:.0f} ms"
        )


if __name__ == "__main__":
    main()
