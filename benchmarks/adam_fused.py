"""Adam's update of a variant's generator and discriminator parameters: the per-parameter loop
(torch's CPU default) against ``fused=True`` (cavga's, ``step.make_optimizers``).

The two are timed alternately in one process on the same parameters and gradients (random: an
update costs the same whatever the values), the median of ``--repeats`` steps each; the first
step of each, which allocates Adam's moments, is left out.  Prints a table and writes JSON.

    OMP_NUM_THREADS=2 PYTHONPATH=src python benchmarks/adam_fused.py
"""

from __future__ import annotations

import torch

from cavga.networks import build_networks
from cavga.speed import ab
from cavga.speed.bench import _config

KINDS = {"loop": {"foreach": False}, "fused": {"fused": True}}


def main() -> None:
    args = ab.parser(__doc__.splitlines()[0], "Du,Ru", 7, "benchmarks/results/speed/adam_fused.json").parse_args()
    peak_before = ab.start(args)
    rows = []
    for variant in args.variants.split(","):
        torch.manual_seed(0)
        model, disc = build_networks(_config(variant, args.size, args.batch).model, args.size, allow_random_init=True)
        params = [p for p in (*model.parameters(), *disc.parameters()) if p.requires_grad]
        for p in params:
            p.grad = torch.randn_like(p)
        opts = {name: torch.optim.Adam(params, lr=1e-4, **kw) for name, kw in KINDS.items()}
        for opt in opts.values():
            opt.step()  # allocates Adam's moments: left out of the timing
        ms = {name: 1000 * t for name, t in ab.alternate({k: o.step for k, o in opts.items()}, args.repeats).items()}
        rows.append(
            {
                "variant": variant,
                "parameters_m": round(sum(p.numel() for p in params) / 1e6, 2),
                "ms_per_update": {k: round(v, 1) for k, v in ms.items()},
                "speedup": round(ms["loop"] / ms["fused"], 2),
            }
        )
    table = ["| model | parameters (M) | Adam update ms: loop -> fused | speed-up |", "|---|---|---|---|"]
    for r in rows:
        m = r["ms_per_update"]
        table.append(f"| {r['variant']} | {r['parameters_m']} | {m['loop']} -> {m['fused']} | x{r['speedup']} |")
    ab.finish(args, peak_before, rows, table)


if __name__ == "__main__":
    main()
