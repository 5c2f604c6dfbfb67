"""What `infer.shifted_map` costs the predictor: the map read once against averaged over the image
and its three half-cell shifts (docs/method.md, Inference); with ``--setting enlarged_map``, what
`infer.enlarged_map` costs: the map averaged with the map of the image enlarged twofold (CAVGA-u);
with ``--setting map_blur``, what `infer.map_blur` costs: the map blurred by 4 px against not at all.

Both settings are timed alternately in one process, so drift in the machine's speed falls on both:
``Predictor.predict_batch`` on a synthetic batch (random weights: the same arithmetic as trained
ones), the median of ``--repeats`` calls each, with the FLOPs of one batch counted by
``torch.utils.flop_counter`` and the achieved FLOP/s as a fraction of the fp32 matmul peak measured
in the same run.  Prints a table and writes JSON.

    OMP_NUM_THREADS=2 PYTHONPATH=src python benchmarks/shifted_map_cost.py
    OMP_NUM_THREADS=2 PYTHONPATH=src python benchmarks/shifted_map_cost.py --setting enlarged_map \
        --variants Du,Ru --out benchmarks/results/speed/enlarged_map_cost.json
    OMP_NUM_THREADS=2 PYTHONPATH=src python benchmarks/shifted_map_cost.py --setting map_blur \
        --out benchmarks/results/speed/map_blur_cost.json
"""

from __future__ import annotations

import copy
import functools

import torch

from cavga.speed import ab
from cavga.speed.flops import count_flops
from cavga.speed.measure import synthetic_predictor

# each setting: the rows' key with it on, its value off, its value on (the other settings: the defaults)
SETTINGS = {
    "shifted_map": ("shifted", False, True),
    "enlarged_map": ("enlarged", False, True),
    "map_blur": ("blurred", 0.0, 4.0),
}


def main() -> None:
    parser = ab.parser(__doc__.splitlines()[0], "Du,Ru,Dw,Rw", 7, "benchmarks/results/speed/shifted_map_cost.json")
    parser.add_argument("--setting", choices=tuple(SETTINGS), default="shifted_map")
    args = parser.parse_args()
    on, off_value, on_value = SETTINGS[args.setting]  # the rows' key for the setting on, and its two values
    peak_before = ab.start(args)
    cpu = torch.device("cpu")
    rows = []
    for variant in args.variants.split(","):
        cfg, model, x = ab.prediction_setup(variant, args)  # x: (B, 3, S, S)
        calls = {}
        for name, value in (("plain", off_value), (on, on_value)):
            c = copy.deepcopy(cfg)
            setattr(c.infer, args.setting, value)
            calls[name] = functools.partial(synthetic_predictor(model, c, cpu).predict_batch, x)
        flops = {name: count_flops(call) / args.batch for name, call in calls.items()}
        seconds = ab.alternate(calls, args.repeats)
        ips = {name: args.batch / s for name, s in seconds.items()}
        rows.append(
            {
                "variant": variant,
                "plain_gflop_per_image": round(flops["plain"] / 1e9, 3),
                f"{on}_gflop_per_image": round(flops[on] / 1e9, 3),
                "plain_images_per_s": round(ips["plain"], 2),
                f"{on}_images_per_s": round(ips[on], 2),
                "slowdown": round(ips["plain"] / ips[on], 3),
                # achieved FLOP/s as a fraction of the fp32 matmul peak measured before the timings
                "plain_fraction_of_peak": round(flops["plain"] * ips["plain"] / 1e9 / peak_before, 3),
                f"{on}_fraction_of_peak": round(flops[on] * ips[on] / 1e9 / peak_before, 3),
            }
        )
    table = [
        f"| model | GFLOP/img plain / {on} | img/s plain / {on} | slow-down | % of peak plain / {on} |",
        "|---|---|---|---|---|",
    ]
    table += [
        f"| {r['variant']} | {r['plain_gflop_per_image']} / {r[f'{on}_gflop_per_image']} | "
        f"{r['plain_images_per_s']} / {r[f'{on}_images_per_s']} | x{r['slowdown']} | "
        f"{100 * r['plain_fraction_of_peak']:.0f}% / {100 * r[f'{on}_fraction_of_peak']:.0f}% |"
        for r in rows
    ]
    ab.finish(args, peak_before, rows, table)


if __name__ == "__main__":
    main()
