"""The gallery page of a ``cavga predict`` folder: each image with its verdict and score."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import CavgaError
from .gallery import mask_rule, thumbnail
from .render import page_link, render_page

PREDICT_PANELS = (("input", "input"), ("overlay", "heatmap overlay"), ("mask", "predicted mask"))
PREDICT_SORTS = (("score", "score (highest first)"), ("name", "name"))


def write_predict_report(out_dir: str | Path, previous: set[Path] = frozenset()) -> Path:
    """Write ``OUT/report/index.html`` from ``OUT/predictions.json`` (input thumbnails in ``report/img``).
    Of the files already there, only an earlier run's thumbnails (in ``previous``, resolved: the
    outputs ``predict`` recorded) are removed; nothing else in ``OUT/report`` is touched."""
    from PIL import Image

    from .. import data as D
    from ..predict_outputs import REPORT_PAGE, report_thumbnail
    from ..visualize import save_png

    out_dir = Path(out_dir)
    path = out_dir / "predictions.json"
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise CavgaError(f"{path}: unreadable ({e})") from None
    page = out_dir / REPORT_PAGE
    img_dir = (page.parent / "img").resolve()
    for stale in previous:  # an earlier run's thumbnails (a longer run leaves more of them)
        if stale.parent == img_dir and stale.is_file() and not stale.is_symlink():
            stale.unlink()
    items = []
    gate = saved.get("mask_gate") == "verdict"
    for i, row in enumerate(saved.get("predictions", [])):
        thumb, missing = report_thumbnail(i), None
        try:
            rgb = thumbnail(D.load_image(row["path"], None))  # cavga's reader: 16-bit and float images too
            save_png(Image.fromarray(rgb), out_dir / thumb)
        except CavgaError as e:  # the input moved or deleted since it was predicted: a placeholder card
            missing = str(e)
        thumb = Path(thumb).relative_to(page.parent.relative_to(out_dir)).as_posix()  # from the page
        name = row["overlay"].removesuffix("_overlay.png")
        anomalous = row["verdict"] == "anomalous"
        items.append(
            {
                "name": name,
                "score": row["score"],
                "error": row["score"],
                "defect": "",
                "iou": None,
                "iou_ungated": None,
                "gate_emptied": gate and not anomalous,
                "missing": missing,
                "kind": "FP" if anomalous else "TN",  # colours only: predict knows no labels
                "kind_text": row["verdict"],
                "verdict": row["verdict"],
                "panels": {
                    "input": page_link(thumb),
                    "overlay": page_link(f"../{row['overlay']}"),
                    "mask": page_link(f"../{row['mask']}"),
                },
            }
        )
    items.sort(key=lambda g: -g["score"])
    rule = saved.get("mask_threshold")  # a folder written before predictions.json held it: not said
    legend = "as the model's settings say" if rule is None else mask_rule(
        float(rule), float(saved.get("mask_peak_fraction") or 0.0), float(saved.get("mask_min_area") or 0.0), gate
    )  # fmt: skip
    return render_page(
        "predict.html.j2",
        page,
        run=saved.get("run"),
        score_threshold=saved.get("score_threshold"),
        legend=legend,
        images=items,
        failed=saved.get("failed", []),
        panels=PREDICT_PANELS,
        sorts=PREDICT_SORTS,
    )
