"""MVTec AD's minimum-area threshold (``infer.mask_min_area``) against a run's decided mask, on paint.

A finished run's mask threshold was decided on painted defects (``infer.mask_quantile: auto``: the
quantile and peak fraction whose masks overlap the paint best). MVTec AD's rule (Bergmann et al.
2019, Sec. 4.3; :mod:`cavga.min_area`) sets the threshold from the held-out normals alone and drops
mask regions smaller than a stated area. This probe paints the run's held-out normals as training's
mask decision does (paint seed 0, ``infer.mask_copies`` copies, faded by the run's ``infer.mask_fade``)
and prints the painted IoU of the decided mask and of the area rule at each ``--areas`` share, with
the rule's threshold computed by the library's own decision (``area_rule_decisions``). No test image
is read.

    PYTHONPATH=src python benchmarks/min_area_probe.py RUN [RUN ...] --out probe.json
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from cavga.config.resolve import mask_fade
from cavga.image_scores import peak_mask
from cavga.inference import Predictor
from cavga.io_utils import atomic_write_json
from cavga.mask_threshold import area_rule_decisions
from cavga.metrics import iou
from cavga.painting import content_only, held_out_images, held_out_normals, predict_painted, protocol_text

WAYS = ("area_rule", "filter_only")  # MVTec AD's threshold and region filter; the filter alone
AREAS = (0.0005, 0.001, 0.002, 0.005, 0.01)  # shares of the image: 8 to 164 px at 128 x 128


def probe(run: Path, areas: tuple[float, ...]) -> dict:
    predictor = Predictor.from_run(run, "cpu")
    cfg = predictor.cfg
    images, boxes = held_out_images(held_out_normals(run), cfg.data.image_size, cfg.data.resize)
    copies, fade = cfg.infer.mask_copies, mask_fade(cfg)
    cols, masks, labels, _, painted_boxes = predict_painted(predictor, images, boxes, 0, copies, fade)
    maps, masks = content_only(cols["map"], painted_boxes), content_only(masks, painted_boxes)
    decided = [peak_mask(m, predictor.mask_threshold, predictor.mask_peak_fraction) for m in maps]
    out: dict = {
        "run": str(run),
        "model": cfg.model.label,
        "paint": protocol_text(len(images), copies, 0, fade),
        "decided": {
            "mask_threshold": predictor.mask_threshold,
            "mask_peak_fraction": predictor.mask_peak_fraction,
            "painted_iou": round(iou(decided, masks, labels), 4),
        },
        "area_rule": {},
        "filter_only": {},  # the decided threshold, the masks' regions under the area dropped
    }
    for area in areas:
        filtered = [peak_mask(m, predictor.mask_threshold, predictor.mask_peak_fraction, min_area=area) for m in maps]
        out["filter_only"][str(area)] = {"painted_iou": round(iou(filtered, masks, labels), 4)}
        predictor.mask_min_area = area
        rule = area_rule_decisions(predictor, maps, masks, labels, 0.0, 0.0, "")["mask_quantile"]
        out["area_rule"][str(area)] = {
            "threshold": rule["min_area_rule"]["threshold"],
            "mask_quantile": rule["mask_quantile"],
            "painted_iou": rule["validation_iou_at_rule"],
        }
    return out


def verdict(results: list[dict], way: str = "area_rule") -> dict:
    """The rules posted before their numbers: of ``way`` ("area_rule", or "filter_only"), the area with
    the highest mean painted IoU over the runs passes if its painted IoU is above the decided mask's
    on every run."""
    areas = list(results[0][way])
    mean = {a: float(np.mean([r[way][a]["painted_iou"] for r in results])) for a in areas}
    best = max(areas, key=lambda a: mean[a])
    passes = all(r[way][best]["painted_iou"] > r["decided"]["painted_iou"] for r in results)
    return {"best_area": float(best), "mean_painted_iou": mean, "passes": passes}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--areas", default=",".join(map(str, AREAS)), help="shares of the image, comma-separated")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    areas = tuple(float(a) for a in args.areas.split(","))
    results = [probe(run, areas) for run in args.runs]
    print(f"| run | painted IoU of | decided mask | {' | '.join(f'area {a:g}' for a in areas)} |")
    print("|---|---|---|" + "---|" * len(areas))
    for r in results:
        for way in WAYS:
            cells = " | ".join(f"{v['painted_iou']:.4f}" for v in r[way].values())
            print(f"| {r['run']} | {way} | {r['decided']['painted_iou']:.4f} | {cells} |")
    summary = {"runs": results, "rules": {way: verdict(results, way) for way in WAYS}}
    for way, rule in summary["rules"].items():
        print(f"rule ({way}):", rule)
    if args.out:
        atomic_write_json(args.out, summary)


if __name__ == "__main__":
    main()
