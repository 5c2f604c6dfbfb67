"""Gallery thumbnails of one test image: input, heatmap overlay, predicted mask, true mask."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .. import data as D
from ..image_scores import final_mask
from ..visualize import heatmap_overlay, mask_image, save_png

THUMB = 224  # longest side of a gallery thumbnail, in pixels


def thumb_size(h: int, w: int, longest: int = THUMB) -> tuple[int, int]:
    """(H, W) scaled so that the longest side is at most ``longest`` (never enlarged)."""
    s = min(1.0, longest / max(h, w))
    return max(1, round(h * s)), max(1, round(w * s))


def thumbnail(image: torch.Tensor) -> np.ndarray:
    """An image (3, H, W) in [0, 1] as an 8-bit (h', w', 3) thumbnail, its longest side ``THUMB``."""
    size = thumb_size(*image.shape[1:])
    rgb = Image.fromarray(np.round(image.permute(1, 2, 0).numpy() * 255).astype(np.uint8))
    return np.asarray(rgb.resize(size[::-1], Image.Resampling.BILINEAR))  # (h', w', 3)


def _resized(x: np.ndarray, size: tuple[int, int], nearest: bool) -> np.ndarray:
    """A 2-D array resized to ``size`` = (H, W): nearest (masks) or bilinear (maps)."""
    if x.shape == size:
        return x
    if nearest:
        img = Image.fromarray(x.astype(np.uint8) * 255).resize(size[::-1], Image.Resampling.NEAREST)
        return np.asarray(img) > 127
    return np.asarray(Image.fromarray(x.astype(np.float32)).resize(size[::-1], Image.Resampling.BILINEAR))


def mask_rule(threshold: float, fraction: float = 0.0, min_area: float = 0.0, gate: bool = False) -> str:
    """The predicted mask's rule in words, for a page's colour legend."""
    rule = f"the map at or above {threshold:.4g}"
    rule += f", raised {fraction:g} of the way to each map's own peak" if fraction else ""
    rule += f", regions under {min_area:g} of the image dropped" if min_area else ""
    return rule + ("; empty where the verdict is normal" if gate else "; shown whatever the verdict")


def native_mask(amap: np.ndarray, size: tuple[int, int], thresholds: dict, verdict: int) -> np.ndarray:
    """The mask (H, W) evaluate scored for a stored map ``amap`` (h, w): the map upsampled bilinearly to
    the image's own ``size`` (as :func:`cavga.image_scores.native_map`) and masked by
    :func:`cavga.image_scores.final_mask` with scores.json's ``thresholds`` (its mask threshold, peak
    fraction, minimum area, and gate: ``verdict`` empties it where the gate is on)."""
    m = torch.from_numpy(np.ascontiguousarray(amap, dtype=np.float32))  # (h, w)
    if tuple(m.shape) != tuple(size):
        m = F.interpolate(m[None, None], size=tuple(size), mode="bilinear", align_corners=False)[0, 0]  # (H, W)
    return final_mask(
        m.clamp(0, 1).numpy(),
        verdict,
        float(thresholds["mask"]),
        float(thresholds.get("mask_peak_fraction") or 0.0),  # evaluated before it existed: 0
        float(thresholds.get("mask_min_area") or 0.0),
        thresholds.get("mask_gate") == "verdict",  # evaluated before it existed: every mask shown
    )  # (H, W)


def write_panels(
    image_path: str,
    amap: np.ndarray,
    thresholds: dict,
    mask_path: str | None,
    label: int,
    verdict: int,
    out_dir: Path,
    stem: str,
) -> dict[str, str | None]:
    """Write ``<stem>_{input,overlay,pred,true}.png`` thumbnails into ``out_dir``; return their names
    (``true`` is None for an anomalous image without a mask). ``amap`` (h, w) in [0, 1] is coloured at
    the thumbnail's size; the predicted mask is the one evaluate scored (:func:`native_mask`, at the
    image's own size, gated by ``verdict`` where scores.json's ``thresholds`` say so), shrunk to it."""
    image = D.load_image(image_path, None)  # (3, H, W)
    h, w = image.shape[1:]
    rgb = thumbnail(image)  # (h', w', 3) uint8
    size = rgb.shape[:2]
    m = np.clip(_resized(amap, size, nearest=False), 0.0, 1.0)  # (h', w')
    pred = _resized(native_mask(amap, (h, w), thresholds, verdict), size, nearest=True)  # (h', w')
    names: dict[str, str | None] = {k: f"{stem}_{k}.png" for k in ("input", "overlay", "pred", "true")}
    save_png(Image.fromarray(rgb), out_dir / names["input"])
    save_png(heatmap_overlay(rgb.astype(np.float32) / 255, m, pred), out_dir / names["overlay"])
    save_png(mask_image(pred), out_dir / names["pred"])
    if mask_path is not None:
        gt = D.load_mask(mask_path, None, (h, w), image_path)[0].numpy() > 0.5  # (H, W)
        save_png(mask_image(_resized(gt, size, nearest=True)), out_dir / names["true"])
    elif label == 0:  # a normal image's true mask is empty
        save_png(mask_image(np.zeros(size, dtype=bool)), out_dir / names["true"])
    else:
        names["true"] = None
    return names
