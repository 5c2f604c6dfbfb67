"""Time one ``train.validate_every`` check on a finished run's weights (the painted pixel AUROC).

    OMP_NUM_THREADS=1 python benchmarks/epoch_check_cost.py runs/traj-seed1-ep20

Loads the run's held-out normals once, then runs :func:`cavga.validation.painted_pixel_auroc` with
the run's map settings asked as ``auto`` (as training's checks ask them); prints the seconds and the
score, which equals the run's painted check where those settings were ``auto``. Trains nothing.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from cavga.config import from_dict
from cavga.networks import build_networks
from cavga.painted_decisions import epoch_check
from cavga.painting import held_out_images
from cavga.runfolder import RunData
from cavga.runtime import CHECKPOINT, load_checkpoint


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    args = ap.parse_args(argv)
    state = load_checkpoint(args.run / CHECKPOINT)
    cfg = from_dict(state["config"], str(args.run / CHECKPOINT), saved=True)
    cfg.infer.attention_direction = cfg.infer.shifted_map = cfg.infer.weak_map = "auto"
    model, _ = build_networks(cfg.model, cfg.data.image_size, from_checkpoint=True)
    model.load_state_dict(state["model"])
    images, boxes = held_out_images(RunData.load(args.run).val, cfg.data.image_size, cfg.data.resize)
    t0 = time.perf_counter()
    score, _ = epoch_check(model, images, boxes, cfg, torch.device("cpu"))
    seconds = time.perf_counter() - t0
    print(f"one check: {seconds:.1f} s at {torch.get_num_threads()} thread(s); painted pixel AUROC {score:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
