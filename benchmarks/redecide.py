"""Re-run the end of training on a finished run, in a copy: the ``auto`` inference settings decided
on painted held-out normals, the held-out statistics of the map so chosen and the mask quantile
(``cavga.decisions.finish_decisions``; for AE-L2, AE-SSIM and PatchCore runs the statistics and the mask
quantile, ``cavga.baselines.fit.finish_baseline_decisions``), with the code of today. No weight changes, no test image.

Runs trained before a change to those decisions (such as the direct map's unclamped values) get
the decisions a new training would make, so that their test split can be scored like a new run's:

    .venv/bin/python benchmarks/redecide.py runs/old runs/old-redecided --set infer.mask_quantile=auto
    .venv/bin/cavga validate runs/old-redecided && .venv/bin/cavga evaluate runs/old-redecided
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from cavga.baselines.fit import finish_baseline_decisions
from cavga.baselines.scoring import load_baseline
from cavga.config import apply_overrides, from_dict, save_config, to_dict
from cavga.decisions import finish_decisions
from cavga.networks import build_networks
from cavga.runfolder import RunData
from cavga.runtime import CHECKPOINT, load_checkpoint, resolve_device, save_checkpoint


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("out", type=Path, help="the copy to write (must not exist)")
    ap.add_argument("--set", action="append", default=[], help="infer.* settings to decide with (e.g. auto)")
    ap.add_argument("--device", default="auto")
    args = ap.parse_args(argv)
    if any(not s.startswith("infer.") for s in args.set):
        ap.error("only infer.* settings can change after training")
    shutil.copytree(args.run, args.out)  # refuses an existing folder: nothing is overwritten
    for leftover in (".lock", "metrics.json", "validation.json", "scores.json"):
        (args.out / leftover).unlink(missing_ok=True)  # of the old decisions
    state = load_checkpoint(args.out / CHECKPOINT)
    cfg = from_dict(state["config"], str(args.out / CHECKPOINT), saved=True)  # keys it lacks: as it was made
    apply_overrides(cfg, args.set)
    cfg.validate()
    device = resolve_device(args.device)
    run_data = RunData.load(args.out)
    if cfg.model.is_baseline:  # AE-L2, AE-SSIM, PatchCore: their fitting's end
        decided = finish_baseline_decisions(load_baseline(state, cfg).to(device), cfg, run_data, device)
    else:
        model, _ = build_networks(cfg.model, cfg.data.image_size, from_checkpoint=True)
        model.load_state_dict(state["model"])
        decided = finish_decisions(model.to(device), run_data, cfg, device)
    state["config"] = to_dict(cfg)
    state.update(decided)
    save_checkpoint(state, args.out / CHECKPOINT)
    save_config(cfg, args.out / "config.yaml")
    for key in ("attention_direction", "image_score", "weak_map", "mask_quantile", "mask_margin", "mask_peak_fraction"):
        if decided.get(key):
            print(key, decided[key])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
