"""What a run's report needs, stored by ``evaluate`` so that ``cavga report`` never runs the model.

``RUN_DIR/scores.json`` holds every test image's scores and verdict, the verdict threshold (on the
normalised and on the raw scale), the held-out normal scores the normaliser was fitted on, and the
image ROC and pixel PRO curves; ``RUN_DIR/maps/NNNN.png`` holds each test image's anomaly map at the
model's resolution as a 16-bit PNG (value / 65535 is the map in [0, 1]).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from sklearn.metrics import roc_curve

from ..errors import CavgaError
from ..io_utils import atomic_write, atomic_write_json, read_json
from ..metrics import UndefinedMetricError, pro_curve

SCORES_FILE = "scores.json"
MAPS_DIR = "maps"
MAP_SCALE = 65535  # 16-bit PNG value of map value 1.0
CURVE_POINTS = 300  # stored curves are thinned to about this many points
PRO_FPR_LIMIT = 0.3


def save_map16(amap: np.ndarray, path: str | Path) -> Path:
    """Write a map (H, W) in [0, 1] as a 16-bit grey PNG (value = round(map * 65535)), atomically."""
    q = np.round(np.clip(np.asarray(amap, dtype=np.float64), 0.0, 1.0) * MAP_SCALE).astype(np.uint16)  # (H, W)
    img = Image.fromarray(q)
    return atomic_write(path, lambda tmp: img.save(tmp, format="PNG"))


def load_map16(path: str | Path) -> np.ndarray:
    """A map written by :func:`save_map16`, as float32 (H, W) in [0, 1]."""
    try:
        with Image.open(path) as im:
            return np.asarray(im, dtype=np.float32) / MAP_SCALE  # (H, W)
    except OSError as e:
        raise CavgaError(f"{path}: unreadable anomaly map ({e})") from None


def thin(x: np.ndarray, y: np.ndarray, n: int = CURVE_POINTS) -> tuple[list[float], list[float]]:
    """A curve's points, at most about ``n`` of them (evenly spaced by index, both ends kept), rounded."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.size > n:
        idx = np.unique(np.round(np.linspace(0, x.size - 1, n)).astype(int))
        x, y = x[idx], y[idx]
    return [round(float(v), 6) for v in x], [round(float(v), 6) for v in y]


def raw_threshold(normalizer: dict[str, Any] | None, score_threshold: float) -> float | None:
    """The raw score whose normalised score is ``score_threshold``: lo + 2 (hi - lo) t (inverse of the normaliser)."""
    if not normalizer:
        return None
    span = max(normalizer["hi"] - normalizer["lo"], 1e-12)
    return float(normalizer["lo"] + 2 * span * score_threshold)


def curves(raw: np.ndarray, labels: np.ndarray, maps: list[np.ndarray], masks: list[np.ndarray]) -> dict[str, Any]:
    """The image ROC (of the raw scores) and the pixel PRO curve up to FPR 0.3 (None where undefined).

    ``maps``/``masks``: the images with real ground truth, at their own sizes, as the metrics use them."""
    out: dict[str, Any] = {"roc": None, "pro": None}
    if 0 < labels.sum() < labels.size:
        fpr, tpr, _ = roc_curve(labels, raw)
        out["roc"] = dict(zip(("fpr", "tpr"), thin(fpr, tpr), strict=True))
    if maps:
        try:
            fpr, pro = pro_curve(maps, masks, PRO_FPR_LIMIT)
            out["pro"] = dict(zip(("fpr", "pro"), thin(fpr, pro), strict=True), fpr_limit=PRO_FPR_LIMIT)
        except UndefinedMetricError:
            pass
    return out


def write_scores(run_dir: str | Path, payload: dict[str, Any]) -> Path:
    return atomic_write_json(Path(run_dir) / SCORES_FILE, payload)


def load_scores(run_dir: str | Path) -> dict[str, Any]:
    """``RUN_DIR/scores.json``; a missing or broken file is a one-line CavgaError."""
    path = Path(run_dir) / SCORES_FILE
    data = read_json(path, f"run `cavga evaluate {run_dir}` first", "scores file")
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise CavgaError(f"{path}: not a cavga scores file (expected a mapping with an images list)")
    return data
