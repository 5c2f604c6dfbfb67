"""Adam's update of a variant's generator and discriminator parameters: the per-parameter loop
(torch's CPU default) against ``fused=True`` (cavga's, ``train._optimizers``).

The two are timed alternately in one process on the same parameters and gradients (random: an
update costs the same whatever the values), the median of ``--repeats`` steps each; the first
step of each, which allocates Adam's moments, is left out.  Prints a table and writes JSON.

    OMP_NUM_THREADS=2 PYTHONPATH=src python benchmarks/adam_fused.py
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from cavga.networks import build_networks
from cavga.speed.bench import _config
from cavga.speed.flops import matmul_peak
from cavga.speed.report import write_comparison

KINDS = {"loop": {"foreach": False}, "fused": {"fused": True}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", default="Du,Ru")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--batch", type=int, default=16, help="recorded only: an update does not depend on it")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="benchmarks/results/speed/adam_fused.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cpu = torch.device("cpu")
    rows = []
    peak_before = matmul_peak(cpu, torch.float32) / 1e9
    for variant in args.variants.split(","):
        torch.manual_seed(0)
        model, disc = build_networks(_config(variant, args.size, args.batch).model, args.size, allow_random_init=True)
        params = [p for p in (*model.parameters(), *disc.parameters()) if p.requires_grad]
        for p in params:
            p.grad = torch.randn_like(p)
        opts = {name: torch.optim.Adam(params, lr=1e-4, **kw) for name, kw in KINDS.items()}
        seconds: dict[str, list[float]] = {name: [] for name in KINDS}
        for r in range(args.repeats + 1):
            for name, opt in opts.items():
                t0 = time.perf_counter()
                opt.step()
                if r:
                    seconds[name].append(time.perf_counter() - t0)
        ms = {name: 1000 * statistics.median(s) for name, s in seconds.items()}
        rows.append(
            {
                "variant": variant,
                "parameters_m": round(sum(p.numel() for p in params) / 1e6, 2),
                "ms_per_update": {k: round(v, 1) for k, v in ms.items()},
                "speedup": round(ms["loop"] / ms["fused"], 2),
            }
        )
    peak_after = matmul_peak(cpu, torch.float32) / 1e9
    print(f"fp32 matmul peak {peak_before:.1f} GFLOP/s before, {peak_after:.1f} after; {args.threads} threads\n")
    print("| model | parameters (M) | Adam update ms: loop -> fused | speed-up |")
    print("|---|---|---|---|")
    for r in rows:
        m = r["ms_per_update"]
        print(f"| {r['variant']} | {r['parameters_m']} | {m['loop']} -> {m['fused']} | x{r['speedup']} |")
    write_comparison(args.out, args, (peak_before, peak_after), rows)


if __name__ == "__main__":
    main()
