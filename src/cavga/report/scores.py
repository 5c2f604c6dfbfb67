"""What a run's report needs, stored by ``evaluate`` so that ``cavga report`` never runs the model.

``RUN_DIR/scores.json`` holds every test image's scores and verdict, the verdict threshold (on the
normalised and on the raw scale), the held-out normal scores the normaliser was fitted on, and the
image ROC and pixel PRO curves; ``RUN_DIR/maps/NNNN.png`` holds each test image's anomaly map at the
model's resolution as a 16-bit PNG (value / 65535 is the map in [0, 1]). ``maps/.evaluation`` and
scores.json's ``evaluation`` hold one id per evaluation, so that maps of an evaluation stopped midway
are never drawn under an earlier one's scores.
"""

from __future__ import annotations

import json
import math
import secrets
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
from PIL import Image
from sklearn.metrics import roc_curve

from ..errors import CavgaError
from ..io_utils import atomic_write, atomic_write_json, atomic_write_text, read_json
from ..metrics import UndefinedMetricError, pro_curve

SCORES_FILE = "scores.json"
MAPS_DIR = "maps"
MAP_SCALE = 65535  # 16-bit PNG value of map value 1.0
CURVE_POINTS = 300  # stored curves are thinned to about this many points
PRO_FPR_LIMIT = 0.3
EVALUATION_FILE = ".evaluation"  # in maps/: the id of the evaluation that wrote them (scores.json's "evaluation")
MAP_MODES = ("I;16", "I;16B", "I;16L", "I")  # how Pillow opens a 16-bit grey PNG


def save_map16(amap: np.ndarray, path: str | Path) -> Path:
    """Write a map (H, W) in [0, 1] as a 16-bit grey PNG (value = round(map * 65535)), atomically."""
    q = np.round(np.clip(np.asarray(amap, dtype=np.float64), 0.0, 1.0) * MAP_SCALE).astype(np.uint16)  # (H, W)
    img = Image.fromarray(q)
    return atomic_write(path, lambda tmp: img.save(tmp, format="PNG"))


def load_map16(path: str | Path) -> np.ndarray:
    """A map written by :func:`save_map16`, as float32 (H, W) in [0, 1]; an unreadable file, or an
    image that is no 16-bit grey map (RGB, 8-bit), is a one-line CavgaError naming it."""
    try:
        with Image.open(path) as im:
            mode = im.mode
            q = np.asarray(im, dtype=np.float32) if mode in MAP_MODES else None  # (H, W)
    except OSError as e:
        raise CavgaError(f"{path}: unreadable anomaly map ({e})") from None
    if q is None or q.ndim != 2 or q.min() < 0 or q.max() > MAP_SCALE:
        raise CavgaError(f"{path}: not an anomaly map cavga wrote (mode {mode}; maps are 16-bit grey)")
    return q / MAP_SCALE  # (H, W)


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


def new_evaluation() -> str:
    """A fresh id for one evaluation (written into maps/ before its first map, into scores.json last)."""
    return secrets.token_hex(8)


def mark_maps(run_dir: str | Path, evaluation: str) -> Path:
    """Write ``evaluation``'s id into ``RUN_DIR/maps`` (before the evaluation writes its first map)."""
    return atomic_write_text(Path(run_dir) / MAPS_DIR / EVALUATION_FILE, evaluation + "\n")


def check_same_evaluation(run_dir: str | Path, scores: dict[str, Any]) -> None:
    """Refuse a ``maps/`` folder written by another evaluation than ``scores`` (scores.json): one
    stopped midway left its new maps under the earlier scores. A run evaluated before the id existed
    has it in neither and passes, as does a run without maps/ (its cards say the maps are missing)."""
    run_dir = Path(run_dir)
    maps = run_dir / MAPS_DIR
    if not maps.is_dir():
        return
    marker = maps / EVALUATION_FILE
    try:
        ours = marker.read_text(encoding="utf-8").strip() if marker.exists() else None
    except (OSError, ValueError):
        ours = ""  # unreadable: matches no id
    if ours != scores.get("evaluation"):
        raise CavgaError(
            f"{maps}: its maps and {SCORES_FILE} come from different evaluations (one stopped midway); "
            f"run `cavga evaluate {run_dir}` again"
        )


def load_scores(run_dir: str | Path) -> dict[str, Any]:
    """``RUN_DIR/scores.json``, checked (:func:`check_scores`) and against ``maps/``
    (:func:`check_same_evaluation`); a missing or broken file is a one-line CavgaError."""
    path = Path(run_dir) / SCORES_FILE
    data = read_json(path, f"run `cavga evaluate {run_dir}` first", "scores file")
    check_scores(data, path, run_dir)
    check_same_evaluation(run_dir, data)
    return data


class FieldCheck:
    """Checks of a JSON file evaluate wrote; the first failure is a one-line CavgaError naming the file
    and the field, and saying to evaluate again (the file was edited, or is not evaluate's)."""

    def __init__(self, path: Path, run_dir: str | Path):
        self.path, self.run_dir = path, run_dir

    def need(self, ok: bool, field: str, expected: str, found: Any = None) -> None:
        if not ok:
            shown = json.dumps(found)
            shown = shown if len(shown) <= 40 else shown[:37] + "..."
            raise CavgaError(
                f"{self.path}: {field} must be {expected} (found {shown}); run `cavga evaluate {self.run_dir}` again"
            )

    def mapping(self, data: dict[str, Any], key: str, optional: bool = False) -> dict[str, Any]:
        v = data.get(key)
        self.need(isinstance(v, dict) or (optional and v is None), key, "a mapping" + " or null" * optional, v)
        return v or {}

    def number(self, v: Any, field: str, optional: bool = False) -> None:
        self.need(is_number(v) or (optional and v is None), field, "a number" + " or null" * optional, v)

    def numbers(self, v: Any, field: str) -> None:
        self.need(isinstance(v, list) and all(map(is_number, v)), field, "a list of numbers", v)


def is_number(v: Any) -> bool:
    """A finite JSON number (not a boolean)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def check_scores(data: Any, path: Path, run_dir: str | Path) -> None:
    """Refuse a scores.json (``data``, read from ``path``) whose fields the report cannot draw."""
    c = FieldCheck(path, run_dir)
    c.need(isinstance(data, dict), "the file", "a mapping with an images list", data)
    thr = c.mapping(data, "thresholds")
    for key in ("score", "mask"):
        c.number(thr.get(key), f"thresholds.{key}")
    for key in ("raw_score", "mask_peak_fraction", "mask_min_area"):
        c.number(thr.get(key), f"thresholds.{key}", optional=True)
    c.need(isinstance(data.get("score_kind"), str), "score_kind", "a string", data.get("score_kind"))
    if data["score_kind"] != "probability" or data.get("calibrated"):  # the histogram draws the raw threshold
        c.number(thr.get("raw_score"), "thresholds.raw_score")
    c.need(isinstance(data.get("evaluation"), (str, type(None))), "evaluation", "an id", data.get("evaluation"))
    c.numbers(data.get("held_out_raw_scores"), "held_out_raw_scores")
    for name, x, y in (("roc", "fpr", "tpr"), ("pro", "fpr", "pro")):
        curve = c.mapping(data, name, optional=True)
        if curve:
            c.numbers(curve.get(x), f"{name}.{x}")
            c.numbers(curve.get(y), f"{name}.{y}")
            c.need(len(curve[x]) == len(curve[y]), f"{name}.{y}", f"as long as {name}.{x}", len(curve[y]))
    if data.get("pro"):
        c.number(data["pro"].get("fpr_limit"), "pro.fpr_limit")
    images = data.get("images")
    c.need(isinstance(images, list), "images", "a list", images)
    seen: set[int] = set()
    for i, im in enumerate(images):
        check_image(c, im, f"images[{i}]", seen)


def check_image(c: FieldCheck, im: Any, field: str, seen: set[int]) -> None:
    """One test image's entry of scores.json; ``seen``: the indices before it (each names its thumbnails)."""
    c.need(isinstance(im, dict), field, "a mapping", im)
    index = im.get("index")
    c.need(type(index) is int and index >= 0 and index not in seen, f"{field}.index", "a new whole number", index)
    seen.add(index)
    c.need(isinstance(im.get("path"), str) and bool(im["path"]), f"{field}.path", "a file path", im.get("path"))
    mask = im.get("mask_path")
    c.need(mask is None or (isinstance(mask, str) and bool(mask)), f"{field}.mask_path", "a file path or null", mask)
    for key in ("label", "verdict"):
        c.need(type(im.get(key)) is int and im[key] in (0, 1), f"{field}.{key}", "0 or 1", im.get(key))
    c.need(isinstance(im.get("defect"), str), f"{field}.defect", "a string", im.get("defect"))
    for key in ("raw_score", "score"):
        c.number(im.get(key), f"{field}.{key}")
    c.number(im.get("iou"), f"{field}.iou", optional=True)
    m = im.get("map")
    ok = isinstance(m, str) and PurePosixPath(m).parent == PurePosixPath(MAPS_DIR)
    c.need(ok and PurePosixPath(m).name not in ("", ".", ".."), f"{field}.map", "a file in maps/", m)
