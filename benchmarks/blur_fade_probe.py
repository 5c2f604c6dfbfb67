"""Should a baseline's map be blurred (``infer.map_blur``)? Judged on painted defects, faded or not.

Session 57 judged the AEs' residual through CAVGA's 4 px blur on full-strength paint and kept it raw;
CAVGA's mask threshold has been decided on paint faded to U(0.3, 1) since sessions 50-53. This probe
reads each finished run's map raw and blurred (the same weights, ``infer.map_blur`` overridden) on
its held-out normals painted with paint seed 0 (the decisions' paint) and seed 1, faded to
U(``--fade``, 1) and at full strength, and prints the threshold-free painted numbers: pixel AUROC
and AUPRO (the mask threshold does not enter them). No test image is read.

    PYTHONPATH=src python benchmarks/blur_fade_probe.py RUN [RUN ...] --out probe.json
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

from cavga.demo_data import DEFECT_TYPES
from cavga.inference import Predictor, ThresholdForAnotherMap
from cavga.io_utils import atomic_write_json
from cavga.metrics import aupro, pixel_auroc
from cavga.painting import content_only, held_out_images, held_out_normals, predict_painted
from cavga.validation import pixel_auroc_by_kind

COPIES = 2  # painted copies per held-out normal, as cavga validate and training's decisions


def painted_numbers(predictor: Predictor, images, boxes, seed: int, fade: float) -> dict[str, float]:
    """Painted pixel AUROC and AUPRO of ``predictor``'s map on paint ``seed`` faded to U(``fade``, 1),
    and each painted kind's pixel AUROC against the clean images (as ``cavga validate``'s per_defect)."""
    cols, masks, labels, kinds, painted_boxes = predict_painted(predictor, images, boxes, seed, COPIES, fade)
    maps, masks = content_only(cols["map"], painted_boxes), content_only(masks, painted_boxes)
    out = {"pixel_auroc": round(pixel_auroc(maps, masks), 4), "aupro": round(aupro(maps, masks), 4)}
    return out | {f"{k}_pixel_auroc": v for k, v in pixel_auroc_by_kind(maps, masks, kinds, labels).items()}


def paint_key(seed: int, fade: float) -> str:
    """The probe's name for a painted set: paint seed and strength (faded or full)."""
    return f"seed{seed}_{'faded' if fade < 1 else 'full'}"


def probe(run: Path, blur: float, fade: float) -> dict:
    blurs = {"raw": 0.0, "blurred": blur}
    read = {name: Predictor.from_run(run, "cpu", [f"infer.map_blur={b:g}"]) for name, b in blurs.items()}
    cfg = read["raw"].cfg
    images, boxes = held_out_images(held_out_normals(run), cfg.data.image_size, cfg.data.resize)
    out: dict = {"run": str(run), "model": cfg.model.label, "n_held_out": len(images), "blur_candidate": blur}
    for name, predictor in read.items():
        painted = ((seed, f) for seed in (0, 1) for f in (fade, 1.0))
        out[name] = {paint_key(*p): painted_numbers(predictor, images, boxes, *p) for p in painted}
    deciding = paint_key(0, fade)
    raw, blurred = out["raw"][deciding], out["blurred"][deciding]
    out["rule"] = {  # session 66's rule: on the deciding paint, the blurred map not lower on either number
        "paint": deciding,
        "blurred_not_lower": all(blurred[k] >= raw[k] for k in ("pixel_auroc", "aupro")),
    }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--blur", type=float, default=4.0, help="the blurred candidate, pixels (CAVGA's default)")
    ap.add_argument("--fade", type=float, default=0.3, help="faded paint: strength U(fade, 1)")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    # the mask threshold was decided for the run's own map; pixel AUROC and AUPRO do not read it
    warnings.filterwarnings("ignore", category=ThresholdForAnotherMap)
    rows = [probe(run, args.blur, args.fade) for run in args.runs]
    print("| run | map | " + " | ".join(f"{k} pixel / AUPRO" for k in rows[0]["raw"]) + " |")
    print("|---|---|" + "---|" * len(rows[0]["raw"]))
    for row in rows:
        for name in ("raw", "blurred"):
            cells = " | ".join(f"{v['pixel_auroc']:.4f} / {v['aupro']:.4f}" for v in row[name].values())
            print(f"| {Path(row['run']).name} | {name} | {cells} |")
        for name in ("raw", "blurred"):  # each painted kind's pixel AUROC, per paint
            by_kind = (" ".join(f"{k}={v[k + '_pixel_auroc']:.4f}" for k in DEFECT_TYPES) for v in row[name].values())
            print(f"| {Path(row['run']).name} | {name}, by kind | " + " | ".join(by_kind) + " |")
        rule = row["rule"]
        print(f"| {Path(row['run']).name} | rule ({rule['paint']}) | blurred not lower: {rule['blurred_not_lower']} |")
    if args.out:
        atomic_write_json(args.out, {"fade": args.fade, "runs": rows})


if __name__ == "__main__":
    main()
