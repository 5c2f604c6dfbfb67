"""CAVGA-R's residual decoder block in the paper's order (upsample, then batch norm, ReLU and the 1x1
skip on the upsampled tensor) against cavga's (the per-pixel maps before the upsampling: the same
function, ``ResidualUpBlock``'s docstring), for the training step and the predictor.

The two orders are timed alternately in one process on the same model, so drift in the machine's
speed falls on both: the median of ``--repeats`` calls each.  Prints a table and writes JSON.

    OMP_NUM_THREADS=2 PYTHONPATH=src python benchmarks/residual_block.py
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cavga.networks import ResidualUpBlock
from cavga.speed import ab
from cavga.speed.measure import synthetic_predictor

FASTER = ResidualUpBlock.forward


def paper_order(self: ResidualUpBlock, x: torch.Tensor) -> torch.Tensor:
    """The block as Sec. 4 draws it: every map on the upsampled tensor."""
    up = F.interpolate(x, scale_factor=2.0, mode="nearest")  # (B, cin, 2h, 2w)
    return self.conv(F.relu(self.bn(up))) + self.skip(up)  # (B, cout, 2h, 2w)


ORDERS = {"paper_order": paper_order, "cavga": FASTER}


def _set_forward(forward) -> None:
    ResidualUpBlock.forward = forward


def _alternate(call, repeats: int) -> dict[str, float]:
    """Median seconds of ``call`` under each block order, the orders taking turns."""
    return ab.alternate_settings(_set_forward, ORDERS, call, repeats, restore=FASTER)


def main() -> None:
    args = ab.parser(__doc__.splitlines()[0], "Ru,Rw", 5, "benchmarks/results/speed/residual_block.json").parse_args()
    peak_before = ab.start(args)
    rows = []
    for variant in args.variants.split(","):
        cfg, model, x, step = ab.training_setup(variant, args)
        train = _alternate(step, args.repeats)
        predictor = synthetic_predictor(model, cfg, torch.device("cpu"))
        infer = _alternate(lambda p=predictor, xb=x: p.predict_batch(xb), args.repeats)
        rows.append(
            {
                "variant": variant,
                "train_ms_per_step": {k: round(1000 * v, 1) for k, v in train.items()},
                "train_speedup": round(train["paper_order"] / train["cavga"], 3),
                "predict_images_per_s": {k: round(args.batch / v, 2) for k, v in infer.items()},
                "predict_speedup": round(infer["paper_order"] / infer["cavga"], 3),
            }
        )
    table = [
        "| model | train ms/step: paper order -> cavga | speed-up | predict img/s: paper order -> cavga | speed-up |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        t, p = r["train_ms_per_step"], r["predict_images_per_s"]
        table.append(
            f"| {r['variant']} | {t['paper_order']} -> {t['cavga']} | x{r['train_speedup']} "
            f"| {p['paper_order']} -> {p['cavga']} | x{r['predict_speedup']} |"
        )
    ab.finish(args, peak_before, rows, table)


if __name__ == "__main__":
    main()
