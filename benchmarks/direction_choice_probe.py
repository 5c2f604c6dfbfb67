"""Which way should ``infer.attention_direction: auto`` read CAVGA-u's attention, and on what paint?

Today ``auto`` chooses between 1 - A and A on painted defects at full strength
(``infer.direction_candidates: one_sided``, ``infer.direction_fade: 1``). This probe asks, on finished
CAVGA-u runs, what the choice would be with the two-sided map among the candidates, decided on paint
faded to U(FADE, 1) as the mask threshold is (``with_two_sided``, ``direction_fade`` FADE), and how the
two choices compare on painted sets no decision saw: the same held-out normals painted with another
paint seed (``--check-seed``), faded and at full strength. Every number comes from the package's own
decision function (:func:`cavga.painted_decisions.decide_on_painted`: the two-sided maps read against the
other held-out images' level, leave-one-out), the map read as the run reads it (its shifts,
enlargement and blur). No test image is read.

    PYTHONPATH=src python benchmarks/direction_choice_probe.py RUN [RUN ...] --out probe.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from cavga.config import DIRECTION_CANDIDATES
from cavga.config.resolve import map_blur
from cavga.inference import Predictor
from cavga.map_choice import resolved_enlarged, resolved_shifted
from cavga.painted_decisions import decide_on_painted
from cavga.painting import held_out_images, held_out_normals
from cavga.runtime import CHECKPOINT, load_checkpoint

THREE = DIRECTION_CANDIDATES["with_two_sided"]


def by_way(predictor: Predictor, images, boxes, seed: int, fade: float) -> dict[str, float]:
    """Each way's painted pixel AUROC on paint ``seed``, faded to U(``fade``, 1) (1: full strength)."""
    cfg = predictor.cfg
    read = {"shifted": resolved_shifted(cfg), "enlarged": resolved_enlarged(cfg), "blur": map_blur(cfg)}
    decided = decide_on_painted(
        predictor.model,
        images,
        cfg.infer.batch_size,
        predictor.device,
        boxes=boxes,
        seed=seed,
        image_score="paper",
        directions=THREE,
        direction_fade=fade,
        **read,
    )["attention_direction"]
    return decided["validation_pixel_auroc_by_direction"]


def probe(run: Path, fade: float, check_seed: int) -> dict:
    predictor = Predictor.from_run(run, "cpu")
    cfg = predictor.cfg
    images, boxes = held_out_images(held_out_normals(run), cfg.data.image_size, cfg.data.resize)
    decided = load_checkpoint(run / CHECKPOINT).get("attention_direction")  # None where it was asked, not decided
    today = decided["attention_direction"] if decided else cfg.infer.attention_direction
    deciding = by_way(predictor, images, boxes, 0, fade)  # the decision's own paint (seed 0), faded
    proposed = max(deciding, key=deciding.get)  # ties keep the earlier, as the package does
    checks = {"faded": by_way(predictor, images, boxes, check_seed, fade)}
    checks["full_strength"] = by_way(predictor, images, boxes, check_seed, 1.0)
    return {
        "run": str(run),
        "model": cfg.model.variant,
        "held_out_normals": len(images),
        "today": today,
        "proposed": proposed,
        "deciding_paint": {"seed": 0, "fade": fade, "pixel_auroc_by_way": deciding},
        "check_paint": {"seed": check_seed, "fade": fade, **checks},
        "proposed_minus_today": {k: round(v[proposed] - v[today], 4) for k, v in checks.items()},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--fade", type=float, default=0.3, help="paint faded to U(FADE, 1), as infer.mask_fade")
    ap.add_argument("--check-seed", type=int, default=1, help="the paint seed of the check (decisions paint seed 0)")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    results = [probe(r, args.fade, args.check_seed) for r in args.runs]
    print("| run | today | proposed | check faded: today / proposed | check full strength: today / proposed |")
    print("|---|---|---|---|---|")
    for r in results:
        f, s = r["check_paint"]["faded"], r["check_paint"]["full_strength"]
        a, b = r["today"], r["proposed"]
        print(f"| {r['run']} | {a} | {b} | {f[a]:.4f} / {f[b]:.4f} | {s[a]:.4f} / {s[b]:.4f} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
