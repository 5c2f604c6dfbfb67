"""How many sub-cell shifts the averaged map should read: painted held-out pixel AUROC of trained runs
with the map averaged over views x views shifts (by 1/views of a latent cell each), views 1 to 4.

``infer.shifted_map`` reads 2 x 2 (half-cell shifts); this asks whether finer shifts (3 x 3, 4 x 4:
up to four times the cost) localise better. Each run's map is the one training chose (direction,
CAVGA-w's map), scored on the painted held-out normals that decide every setting
(``cavga.painted_decisions.decide_on_painted``); no test image is read. Prints a table and writes JSON.

    PYTHONPATH=src python benchmarks/shift_views_probe.py RUN [RUN ...] --out probe.json
"""

from __future__ import annotations

import argparse
import functools
from pathlib import Path

import torch

import cavga.inference
from cavga.attention import half_cell_average
from cavga.inference import Predictor
from cavga.io_utils import atomic_write_json
from cavga.painted_decisions import decide_on_painted
from cavga.painting import held_out_images
from cavga.runfolder import RunData

VIEWS = (2, 3, 4)


def probe(run: str) -> dict[str, float]:
    """Painted pixel AUROC of the run's map at 1 x 1 ("1") and each of VIEWS x VIEWS shifts."""
    predictor = Predictor.from_run(run, "cpu")
    cfg = predictor.cfg
    images, boxes = held_out_images(RunData.load(run).val, cfg.data.image_size, cfg.data.resize)  # (N, 3, S, S)
    direction = cfg.infer.attention_direction if cfg.model.has_attention_direction else "fixed"
    weak = cfg.infer.weak_map if cfg.model.weakly_supervised else "fixed"
    out = {}
    for views in VIEWS:
        cavga.inference.half_cell_average = functools.partial(half_cell_average, views=views)
        try:
            decided = decide_on_painted(
                predictor.model, images, cfg.infer.batch_size, torch.device("cpu"), direction, "paper", weak, boxes
            )["shifted_map"]["validation_pixel_auroc_by_shift"]
        finally:
            cavga.inference.half_cell_average = half_cell_average
        out["1"], out[str(views)] = decided["off"], decided["on"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="finished run folders (CAVGA variants)")
    parser.add_argument("--out", required=True, help="JSON file to write")
    args = parser.parse_args()
    results = {run: probe(run) for run in args.runs}
    keys = ["1", *map(str, VIEWS)]
    print("| run | " + " | ".join(f"{k} x {k}" for k in keys) + " |")
    print("|---|" + "---|" * len(keys))
    for run, row in results.items():
        print(f"| {'/'.join(Path(run).parts[-2:])} | " + " | ".join(f"{row[k]:.4f}" for k in keys) + " |")
    atomic_write_json(args.out, {"metric": "painted held-out pixel AUROC", "by_views": results})


if __name__ == "__main__":
    main()
