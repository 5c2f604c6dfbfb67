"""CPU cost of a grid's cells, from short timings (never a whole grid): seconds per training step
and per evaluated test image, as process CPU time on one thread (robust to a loaded machine).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/grid_timing.py --grid configs/cpu-small.yaml

Trains the grid's first cell (or ``--cell N``) for one epoch into a temporary folder, times ``--steps`` more training
steps on one batch, and evaluates that cell's test split; prints the per-unit costs as JSON.
"""

from __future__ import annotations

import argparse
import copy
import json
import tempfile
import time
from pathlib import Path

import torch

from cavga.evaluate import evaluate_run
from cavga.grid import build_cells, load_grid
from cavga.networks import build_networks
from cavga.runfolder import prepare_data
from cavga.step import make_optimizers, train_step
from cavga.train import train


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--grid", default="configs/cpu-small.yaml")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--cell", type=int, default=0, help="which cell, in run order (default the first)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    cell = build_cells(load_grid(args.grid), "unused")[args.cell]
    cfg = copy.deepcopy(cell.cfg)
    size, batch = cfg.data.image_size, cfg.train.batch_size
    model, disc = build_networks(cfg.model, size, cfg.train.allow_random_init, from_checkpoint=False)
    opt_g, opt_d = make_optimizers(model, disc, cfg)
    x, y = torch.rand(batch, 3, size, size), torch.zeros(batch, dtype=torch.long)  # (B, 3, S, S), (B,)
    train_step(model, disc, opt_g, opt_d, x, y, cfg)  # warm-up
    t = time.process_time()
    for _ in range(args.steps):
        train_step(model, disc, opt_g, opt_d, x, y, cfg)
    step = (time.process_time() - t) / args.steps
    n_train = len(prepare_data(cfg).train)
    with tempfile.TemporaryDirectory() as tmp:
        cfg.train.epochs = 1
        train(cfg, Path(tmp) / "run", progress=False)
        t = time.process_time()
        result = evaluate_run(Path(tmp) / "run", device="cpu", progress=False)
        per_image = (time.process_time() - t) / result["split"]["n_test"]
    out = {
        "cell": cell.key(),
        "batch_size": batch,
        "cpu_s_per_train_step": round(step, 4),
        "train_steps_per_epoch": n_train // batch,
        "cpu_s_per_test_image": round(per_image, 5),
        "n_test": result["split"]["n_test"],
    }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
