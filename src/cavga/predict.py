"""`cavga predict`: verdict, heatmap overlay and mask for a user's images."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from . import data as D
from .errors import CavgaError
from .inference import Predictor
from .io_utils import atomic_write_json
from .visualize import heatmap_overlay, mask_image, save_png

PREDICTIONS_FILE = "predictions.json"


def collect_images(inputs: list[str | Path]) -> list[Path]:
    """Expand files and folders (recursively, sorted) into image paths; anything missing is an error."""
    found: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found += sorted(q for q in p.rglob("*") if q.is_file() and q.suffix.lower() in D.IMAGE_EXTENSIONS)
        elif p.is_file():
            if p.suffix.lower() not in D.IMAGE_EXTENSIONS:
                raise CavgaError(f"{p}: not an image file (expected one of {', '.join(D.IMAGE_EXTENSIONS)})")
            found.append(p)
        else:
            raise CavgaError(f"{p}: no such file or folder")
    if not found:
        raise CavgaError(f"no images found in {', '.join(map(str, inputs))}")
    return found


def predict_to_folder(
    run_dir: str | Path,
    inputs: list[str | Path],
    out_dir: str | Path,
    device: str = "auto",
    infer: list[str] | None = None,
) -> list[dict[str, Any]]:
    """Write ``<name>_overlay.png``, ``<name>_mask.png`` per image and one ``predictions.json``."""
    predictor = Predictor.from_run(run_dir, device, infer)
    paths = collect_images(inputs)
    out_dir = Path(out_dir)
    rows: list[dict[str, Any]] = []
    used: set[str] = set()
    for pred in predictor.predict_paths(paths):
        name = _unique_name(Path(pred.path), used)
        image = D.load_image(pred.path, None)  # (3, H, W) at the image's own size
        save_png(heatmap_overlay(image, pred.anomaly_map, pred.mask), out_dir / f"{name}_overlay.png")
        save_png(mask_image(pred.mask), out_dir / f"{name}_mask.png")
        rows.append(
            {
                "path": pred.path,
                "score": round(pred.score, 6),
                "verdict": "anomalous" if pred.label else "normal",
                "raw_score": round(pred.raw_score, 6),
                "anomalous_area": round(float(pred.mask.mean()), 6),
                "overlay": f"{name}_overlay.png",
                "mask": f"{name}_mask.png",
            }
        )
    atomic_write_json(
        out_dir / PREDICTIONS_FILE,
        {
            "run": str(run_dir),
            "score_threshold": predictor.cfg.infer.score_threshold,
            "mask_threshold": predictor.mask_threshold,
            "predictions": rows,
        },
    )
    return rows


def _unique_name(path: Path, used: set[str]) -> str:
    name, k = path.stem, 1
    while name in used:
        name = f"{path.stem}_{k}"
        k += 1
    used.add(name)
    return name
