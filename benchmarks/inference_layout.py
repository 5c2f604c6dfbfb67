"""Prediction speed with the batch laid out channels_last (cavga's default) against contiguous NCHW.

Both layouts are timed alternately in one process, so drift in the machine's speed falls on both:
``Predictor.predict_batch`` on a synthetic batch (random weights: the same arithmetic as trained
ones), the median of ``--repeats`` calls each.  Prints a table and writes JSON.

    OMP_NUM_THREADS=2 PYTHONPATH=src python benchmarks/inference_layout.py
"""

from __future__ import annotations

import torch

import cavga.evidence as evidence
from cavga.speed import ab
from cavga.speed.measure import synthetic_predictor

LAYOUTS = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}


def _set_layout(fmt: torch.memory_format) -> None:
    evidence.MEMORY_FORMAT = fmt


def main() -> None:
    args = ab.parser(
        __doc__.splitlines()[0], "Du,Ru,Dw,Rw", 7, "benchmarks/results/speed/inference_layout.json"
    ).parse_args()
    peak_before = ab.start(args)
    cpu = torch.device("cpu")
    rows = []
    for variant in args.variants.split(","):
        cfg, model, x = ab.prediction_setup(variant, args)  # x: (B, 3, S, S)
        predictor = synthetic_predictor(model, cfg, cpu)
        predict = lambda p=predictor, xb=x: p.predict_batch(xb)  # noqa: E731
        seconds = ab.alternate_settings(_set_layout, LAYOUTS, predict, args.repeats, restore=torch.channels_last)
        ips = {name: args.batch / s for name, s in seconds.items()}
        rows.append(
            {
                "variant": variant,
                "contiguous_images_per_s": round(ips["contiguous"], 2),
                "channels_last_images_per_s": round(ips["channels_last"], 2),
                "speedup": round(ips["channels_last"] / ips["contiguous"], 3),
            }
        )
    table = ["| model | contiguous img/s | channels_last img/s | speed-up |", "|---|---|---|---|"]
    table += [
        f"| {r['variant']} | {r['contiguous_images_per_s']} | {r['channels_last_images_per_s']} | x{r['speedup']} |"
        for r in rows
    ]
    ab.finish(args, peak_before, rows, table)


if __name__ == "__main__":
    main()
