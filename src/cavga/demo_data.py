"""The embedded demo data set: crops of a scikit-image texture, with painted defects and exact masks.

``generate_demo_dataset(root)`` writes ``root/<category>/`` in MVTec AD layout (load it with
``mvtec_split(root, category)``)::

    train/good/000.png ...                 defect-free crops (RGB, crop x crop)
    test/good/000.png ...                  fresh defect-free crops
    test/<defect>/000.png ...              crops with one synthetic defect
    ground_truth/<defect>/000_mask.png     its exact mask, 0 or 255
    .complete                              JSON of the parameters, written last

The texture (``brick``, ``grass`` or ``gravel``, 512x512 grayscale) ships with scikit-image, so no
download is needed. Training crops come from the left three quarters of the texture, test crops
from anywhere, so most test crops show texture the model never saw. Defects: ``scratch`` (a thin
bright or dark polyline), ``hole`` (a dark ellipse), ``stain`` (a reddish-brown tinted blob) and
``patch`` (a piece of another texture pasted in); each covers about 1-10% of the image.
The output is a function of the parameters alone (same seed, byte-identical files).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from .errors import CavgaError

DEMO_TEXTURES = ("brick", "grass", "gravel")
DEFECT_TYPES = ("scratch", "hole", "stain", "patch")
MARKER = ".complete"
FORMAT_VERSION = 1
_PATCH_SOURCE = {"brick": "gravel", "grass": "brick", "gravel": "brick"}


def texture(name: str) -> np.ndarray:
    """(512, 512) uint8 grayscale texture from scikit-image's bundled data."""
    import skimage.data

    a = np.asarray(getattr(skimage.data, name)())
    if a.ndim == 3:
        a = a[..., :3].mean(axis=2)
    return a.astype(np.uint8)


def _crop(tex: np.ndarray, rng: np.random.Generator, size: int, x_max: int) -> np.ndarray:
    """A random (size, size) crop whose left edge is at most ``x_max``, mildly jittered."""
    h, w = tex.shape
    y0 = int(rng.integers(0, h - size + 1))
    x0 = int(rng.integers(0, min(x_max, w - size) + 1))
    c = tex[y0 : y0 + size, x0 : x0 + size].astype(np.float32)  # (C, C)
    if rng.random() < 0.5:
        c = c[:, ::-1]
    if rng.random() < 0.5:
        c = c[::-1, :]
    gain = rng.uniform(0.92, 1.08)
    offset = rng.uniform(-8.0, 8.0)
    return np.clip(c * gain + offset, 0, 255)  # (C, C) float


def _rgb(gray: np.ndarray) -> np.ndarray:
    return np.repeat(gray[:, :, None], 3, axis=2).astype(np.float32)  # (C, C, 3)


def _draw_mask(size: int, draw) -> np.ndarray:
    m = Image.new("L", (size, size), 0)
    draw(ImageDraw.Draw(m))
    return np.asarray(m) > 0  # (C, C) bool


def _scratch(img: np.ndarray, rng: np.random.Generator, other: np.ndarray) -> np.ndarray:
    c = img.shape[0]
    width = int(rng.integers(2, 5))
    n = int(rng.integers(2, 5))
    seg = rng.uniform(0.6, 0.8) * c / n
    for _ in range(50):  # draw polylines until one lies wholly inside the crop
        pts = [tuple(float(v) for v in rng.uniform(0.2, 0.8, size=2) * c)]
        angle = rng.uniform(0, 2 * math.pi)
        for _ in range(n):
            angle += rng.uniform(-0.7, 0.7)
            x, y = pts[-1]
            pts.append((x + seg * math.cos(angle), y + seg * math.sin(angle)))
        if all(3 <= v <= c - 4 for p in pts for v in p):
            break
    else:  # a straight line across the middle
        pts = [(0.2 * c, 0.5 * c), (0.8 * c, 0.5 * c)]
    mask = _draw_mask(c, lambda d: d.line(pts, fill=255, width=width, joint="curve"))
    value = rng.uniform(235, 255) if rng.random() < 0.5 else rng.uniform(0, 20)
    img[mask] = value + rng.normal(0, 4, size=(int(mask.sum()), 1))
    return mask


def _hole(img: np.ndarray, rng: np.random.Generator, other: np.ndarray) -> np.ndarray:
    c = img.shape[0]
    rx, ry = rng.uniform(0.08, 0.15, size=2) * c
    cx, cy = rng.uniform(0.25, 0.75, size=2) * c
    mask = _draw_mask(c, lambda d: d.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=255))
    img[mask] = rng.uniform(5, 25) + rng.normal(0, 3, size=(int(mask.sum()), 1))
    return mask


def _stain(img: np.ndarray, rng: np.random.Generator, other: np.ndarray) -> np.ndarray:
    c = img.shape[0]
    r = rng.uniform(0.09, 0.15) * c
    cx, cy = rng.uniform(0.25, 0.75, size=2) * c
    k = 14
    angles = np.sort(rng.uniform(0, 2 * math.pi, size=k))
    radii = r * rng.uniform(0.6, 1.3, size=k)
    poly = [(float(cx + a * math.cos(t)), float(cy + a * math.sin(t))) for t, a in zip(angles, radii, strict=True)]
    mask = _draw_mask(c, lambda d: d.polygon(poly, fill=255))
    colour = np.array([rng.uniform(150, 190), rng.uniform(55, 90), rng.uniform(20, 45)], dtype=np.float32)
    alpha = rng.uniform(0.6, 0.8)
    img[mask] = (1 - alpha) * img[mask] + alpha * colour
    return mask


def _patch(img: np.ndarray, rng: np.random.Generator, other: np.ndarray) -> np.ndarray:
    c = img.shape[0]
    s = max(3, int(round(rng.uniform(0.16, 0.28) * c)))
    x0, y0 = (int(v) for v in rng.integers(0, c - s + 1, size=2))
    mask = np.zeros((c, c), dtype=bool)
    mask[y0 : y0 + s, x0 : x0 + s] = True
    h, w = other.shape
    sy, sx = int(rng.integers(0, h - s + 1)), int(rng.integers(0, w - s + 1))
    piece = other[sy : sy + s, sx : sx + s].astype(np.float32)  # (s, s)
    img[mask] = piece.reshape(-1, 1)
    return mask


_DEFECTS = {"scratch": _scratch, "hole": _hole, "stain": _stain, "patch": _patch}


def paint_defect(kind: str, img: np.ndarray, rng: np.random.Generator, other: np.ndarray) -> np.ndarray:
    """Paint one defect of ``kind`` into ``img`` (S, S, 3) float in [0, 255], in place; return its mask (S, S).

    ``other`` is a grayscale texture the "patch" defect copies from (at least S x S)."""
    if img.ndim != 3 or img.shape[0] != img.shape[1] or img.shape[2] != 3:
        raise ValueError(f"paint_defect needs a square (S, S, 3) image, got {img.shape}")
    return _DEFECTS[kind](img, rng, other)


def _save_png(arr: np.ndarray, path: Path) -> None:
    Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8)).save(path, format="PNG")


def _params(seed: int, n_train: int, n_test_good: int, n_test_defect: int, crop: int, category: str) -> dict:
    return {
        "generator": "cavga.demo_data",
        "version": FORMAT_VERSION,
        "category": category,
        "seed": seed,
        "n_train": n_train,
        "n_test_good": n_test_good,
        "n_test_defect": n_test_defect,
        "crop": crop,
    }


def _read_marker(target: Path) -> dict[str, Any] | None:
    try:
        return json.loads((target / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _write(out: Path, params: dict[str, Any]) -> None:
    """Write the whole data set into ``out``, marker last."""
    category, crop = params["category"], params["crop"]
    rng = np.random.default_rng(params["seed"])
    tex = texture(category)
    other = texture(_PATCH_SOURCE[category])
    train_x_max = max(0, tex.shape[1] * 3 // 4 - crop)  # training crops lie in the left 3/4
    if crop > tex.shape[1] * 3 // 4:
        train_x_max = tex.shape[1] - crop
    (out / "train" / "good").mkdir(parents=True)
    (out / "test" / "good").mkdir(parents=True)
    for i in range(params["n_train"]):
        _save_png(_rgb(_crop(tex, rng, crop, train_x_max)), out / "train" / "good" / f"{i:03d}.png")
    for i in range(params["n_test_good"]):
        _save_png(_rgb(_crop(tex, rng, crop, tex.shape[1])), out / "test" / "good" / f"{i:03d}.png")
    counters = dict.fromkeys(DEFECT_TYPES, 0)
    for i in range(params["n_test_defect"]):
        kind = DEFECT_TYPES[i % len(DEFECT_TYPES)]
        img = _rgb(_crop(tex, rng, crop, tex.shape[1]))  # (C, C, 3)
        mask = paint_defect(kind, img, rng, other)  # (C, C) bool
        j = counters[kind]
        counters[kind] += 1
        (out / "test" / kind).mkdir(exist_ok=True)
        (out / "ground_truth" / kind).mkdir(parents=True, exist_ok=True)
        _save_png(img, out / "test" / kind / f"{j:03d}.png")
        _save_png(mask.astype(np.uint8) * 255, out / "ground_truth" / kind / f"{j:03d}_mask.png")
    (out / MARKER).write_text(json.dumps(params, indent=2) + "\n", encoding="utf-8")


def generate_demo_dataset(
    root: str | os.PathLike,
    seed: int = 0,
    n_train: int = 200,
    n_test_good: int = 30,
    n_test_defect: int = 60,
    crop: int = 128,
    category: str = "brick",
) -> Path:
    """Write (or reuse) the demo set at ``root/<category>`` and return that folder.

    A folder that is complete with the same parameters is reused; one completed with other parameters
    is regenerated; any other non-empty folder there is refused, never overwritten. The set is written
    to a hidden temporary folder in ``root`` and renamed into place, so an interrupted run never
    leaves a half-written ``root/<category>``.
    """
    if category not in DEMO_TEXTURES:
        raise CavgaError(f"demo category {category!r}: choose from {', '.join(DEMO_TEXTURES)}")
    if not 16 <= crop <= 512:
        raise CavgaError(f"demo crop {crop}: must be between 16 and 512 pixels")
    if n_train < 1 or n_test_good < 0 or n_test_defect < 0 or n_test_good + n_test_defect < 1:
        raise CavgaError("demo sizes: need n_train >= 1 and at least one test image")
    if int(seed) < 0:  # numpy's generator takes none: refused before the folder is made
        raise CavgaError(f"demo seed {seed}: give a seed of 0 or more (data.seed)")
    root = Path(root).expanduser()
    target = root / category
    params = _params(int(seed), int(n_train), int(n_test_good), int(n_test_defect), int(crop), category)
    marker = _read_marker(target)
    if marker == params:
        return target
    # Only a set this function completed (its MARKER) is ever replaced: sets are renamed into place
    # whole, so a folder without one is not an interrupted set of ours but someone's data, perhaps in
    # the same MVTec layout (train/, test/, ground_truth/), and is left alone.
    if target.exists() and (not target.is_dir() or (marker is None and any(target.iterdir()))):
        raise CavgaError(
            f"{target}: exists and is not a cavga demo data set (no {MARKER} file); refusing to overwrite it: "
            "move it, or give another folder"
        )
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{category}.tmp-"))
    os.chmod(tmp, 0o755)
    try:
        _write(tmp, params)
        if target.exists():
            old = Path(tempfile.mkdtemp(dir=root, prefix=f".{category}.old-"))
            os.replace(target, old / category)
            shutil.rmtree(old)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target
