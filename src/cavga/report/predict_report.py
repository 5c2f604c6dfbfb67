"""The gallery page of a ``cavga predict`` folder: each image with its verdict and score."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from ..errors import CavgaError
from .gallery import THUMB, thumb_size
from .render import render_page

PREDICT_PANELS = (("input", "input"), ("overlay", "heatmap overlay"), ("mask", "predicted mask"))
PREDICT_SORTS = (("score", "score (highest first)"), ("name", "name"))


def write_predict_report(out_dir: str | Path) -> Path:
    """Write ``OUT/report/index.html`` from ``OUT/predictions.json`` (input thumbnails in ``report/img``)."""
    from PIL import Image

    from ..visualize import save_png

    out_dir = Path(out_dir)
    path = out_dir / "predictions.json"
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise CavgaError(f"{path}: unreadable ({e})") from None
    page = out_dir / "report" / "index.html"
    img_dir = page.parent / "img"
    if img_dir.is_dir():
        shutil.rmtree(img_dir)
    items = []
    for i, row in enumerate(saved.get("predictions", [])):
        thumb = f"img/{i:04d}_input.png"
        with Image.open(row["path"]) as im:
            im = im.convert("RGB")
            h, w = thumb_size(im.height, im.width, THUMB)
            save_png(im.resize((w, h), Image.Resampling.BILINEAR), page.parent / thumb)
        name = row["overlay"].removesuffix("_overlay.png")
        anomalous = row["verdict"] == "anomalous"
        items.append(
            {
                "name": name,
                "score": row["score"],
                "error": row["score"],
                "defect": "",
                "iou": None,
                "kind": "FP" if anomalous else "TN",  # colours only: predict knows no labels
                "kind_text": row["verdict"],
                "verdict": row["verdict"],
                "panels": {"input": thumb, "overlay": f"../{row['overlay']}", "mask": f"../{row['mask']}"},
            }
        )
    items.sort(key=lambda g: -g["score"])
    return render_page(
        "predict.html.j2",
        page,
        run=saved.get("run"),
        score_threshold=saved.get("score_threshold"),
        images=items,
        failed=saved.get("failed", []),
        panels=PREDICT_PANELS,
        sorts=PREDICT_SORTS,
    )
