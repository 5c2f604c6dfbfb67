"""Report images: anomaly heatmaps blended over the input, mask contours, comparison strips.

Inputs are numpy arrays or torch tensors with values in [0, 1] (clipped). Images are torch tensors
(3, H, W) or (1, H, W), numpy arrays (H, W, 3) or (H, W, 1), or (H, W) grey: the channel axis is
given by the type, never guessed from the sizes. Outputs are ``PIL.Image.Image`` objects.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import colormaps
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage

from .io_utils import atomic_write

__all__ = ["comparison_strip", "contour", "heatmap_overlay", "mask_image", "save_png"]


def _np(x: Any) -> np.ndarray:
    """A numpy view of ``x``; torch tensors are detached and moved to the CPU."""
    if hasattr(x, "detach"):
        x = x.detach().cpu()
        x = (x.float() if str(x.dtype) == "torch.bfloat16" else x).numpy()
    return np.asarray(x)


def _rgb(image: Any) -> np.ndarray:
    """An image as float32 (H, W, 3) in [0, 1]: torch tensors are channels-first (C, H, W), numpy
    arrays channels-last (H, W, C), either may be grey (H, W). The layout follows the type, never
    the sizes, so a 1-pixel-wide image is not mistaken for a transposed one."""
    channels_first = hasattr(image, "detach")
    x = _np(image).astype(np.float32, copy=False)
    if x.ndim == 3 and channels_first:
        x = x.transpose(1, 2, 0)  # (H, W, C)
    if x.ndim == 2:
        x = x[..., None]  # (H, W, 1)
    if x.ndim != 3 or x.shape[-1] not in (1, 3):
        layout = "(C, H, W) tensor" if channels_first else "(H, W, C) array"
        raise ValueError(f"image must be a {layout} with 1 or 3 channels, or (H, W); got shape {x.shape}")
    if x.shape[-1] == 1:
        x = np.repeat(x, 3, axis=-1)  # (H, W, 3)
    return np.clip(x, 0.0, 1.0)


def _mask(mask: Any) -> np.ndarray:
    """A (H, W) mask as bool; non-bool input is thresholded at 0.5."""
    m = _np(mask)
    m = np.squeeze(m, axis=0) if m.ndim == 3 and m.shape[0] == 1 else m
    if m.ndim != 2:
        raise ValueError(f"mask must be (H, W), got shape {m.shape}")
    return m if m.dtype == bool else m > 0.5


def _resize(x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a (h, w) array to ``size`` = (H, W): nearest for bool, bilinear for float."""
    if x.shape == size:
        return x
    if x.dtype == bool:
        img = Image.fromarray(x.astype(np.uint8) * 255).resize(size[::-1], Image.Resampling.NEAREST)
        return np.asarray(img) > 127
    img = Image.fromarray(x.astype(np.float32))
    return np.asarray(img.resize(size[::-1], Image.Resampling.BILINEAR))


def _to_pil(rgb: np.ndarray) -> Image.Image:
    """float (H, W, 3) in [0, 1] -> 8-bit RGB image."""
    return Image.fromarray(np.round(np.clip(rgb, 0.0, 1.0) * np.float32(255)).astype(np.uint8))


def contour(mask: Any, width: int = 1) -> np.ndarray:
    """The inner boundary (H, W) bool of a mask: mask XOR its erosion (``width`` pixels thick).

    Mask pixels on the image border count as boundary.
    """
    m = _mask(mask)
    return m & ~ndimage.binary_erosion(m, iterations=width, border_value=0)


CONTOUR_PIXELS_PER_WIDTH = 500  # the mask outline is 1 px wide per this many pixels of the longer side


def contour_width_for(size: tuple[int, int]) -> int:
    """The mask outline's width for an image of (H, W) ``size``: 1 px up to 749 px, wider beyond,
    so that it stays visible when a large image is viewed shrunk (6 px on 3000 x 2000)."""
    return max(1, round(max(size) / CONTOUR_PIXELS_PER_WIDTH))


def coloured(amap: np.ndarray, cmap: str = "jet") -> np.ndarray:
    """A map (H, W) in [0, 1] in ``cmap``'s colours, float32 (H, W, 3): matplotlib's lookup
    (min(floor(v N), N - 1) into its N-colour table) without its float64 (H, W, 4) copy."""
    cm = colormaps[cmap]
    lut = cm(np.arange(cm.N))[:, :3].astype(np.float32)  # (N, 3)
    return lut[np.minimum((amap * np.float32(cm.N)).astype(np.int32), cm.N - 1)]  # (H, W, 3)


def heatmap_overlay(
    image: Any,
    anomaly_map: Any,
    mask: Any = None,
    alpha: float = 0.5,
    cmap: str = "jet",
    contour_color: tuple[int, int, int] = (255, 255, 255),
    contour_width: int | None = None,
) -> Image.Image:
    """The anomaly map coloured with ``cmap`` over the fixed range 0..1 (never stretched to each map's
    own range) and blended over the image, in float32.

    ``alpha`` is the weight of the heatmap. The optional predicted mask is drawn as a solid
    ``contour_color`` boundary ``contour_width`` px wide (None: :func:`contour_width_for` the image).
    A map or mask of a different size than the image is resized to it (bilinear / nearest).
    """
    rgb = _rgb(image)  # (H, W, 3) float32
    size = rgb.shape[:2]
    amap = _np(anomaly_map).astype(np.float32, copy=False)
    amap = np.squeeze(amap, axis=0) if amap.ndim == 3 and amap.shape[0] == 1 else amap
    if amap.ndim != 2:
        raise ValueError(f"anomaly_map must be (H, W), got shape {amap.shape}")
    amap = np.clip(_resize(amap, size), 0.0, 1.0)  # (H, W)
    out = coloured(amap, cmap)  # (H, W, 3) float32
    del amap
    out *= np.float32(alpha)
    out += np.float32(1.0 - alpha) * rgb  # (H, W, 3) float32
    if mask is not None:
        width = contour_width_for(size) if contour_width is None else contour_width
        edge = contour(_resize(_mask(mask), size), width)  # (H, W)
        out[edge] = np.asarray(contour_color, dtype=np.float32) / 255.0
    return _to_pil(out)


def mask_image(mask: Any) -> Image.Image:
    """A binary mask as an 8-bit grey ("L") image with values 0 and 255."""
    return Image.fromarray(_mask(mask).astype(np.uint8) * 255)


def save_png(img: Image.Image, path: str | os.PathLike) -> Path:
    """Write ``img`` as PNG atomically, creating parent folders; return the path."""
    return atomic_write(path, lambda tmp: img.save(tmp, format="PNG"))


def comparison_strip(
    image: Any,
    reconstruction: Any,
    anomaly_map: Any,
    pred_mask: Any,
    gt_mask: Any = None,
    gap: int = 2,
    caption: str | None = None,
) -> Image.Image:
    """A horizontal RGB panel: input | reconstruction | heatmap overlay | predicted mask | ground truth.

    The ground-truth panel is left out when ``gt_mask`` is None. Panels have the input's size (others
    are resized to it) and are separated by ``gap`` black pixels. With a ``caption`` (e.g. the score
    and verdict) each panel gets its name above it and the caption goes below the strip.
    """
    rgb = _rgb(image)  # (H, W, 3)
    h, w = rgb.shape[:2]
    recon = _to_pil(_rgb(reconstruction)).resize((w, h), Image.Resampling.BILINEAR)
    panels = [
        _to_pil(rgb),
        recon,
        heatmap_overlay(rgb, anomaly_map, pred_mask),
        mask_image(_resize(_mask(pred_mask), (h, w))).convert("RGB"),
    ]
    if gt_mask is not None:
        panels.append(mask_image(_resize(_mask(gt_mask), (h, w))).convert("RGB"))
    strip = Image.new("RGB", (len(panels) * w + (len(panels) - 1) * gap, h))
    for i, panel in enumerate(panels):
        strip.paste(panel, (i * (w + gap), 0))
    if caption is None:
        return strip
    return _labelled(strip, PANEL_NAMES[: len(panels)], w + gap, caption)


LABEL_MIN_WIDTH = 128  # labelled strips enlarge smaller panels to this width, so their names fit
PANEL_NAMES = ("input", "reconstruction", "anomaly map", "predicted mask", "true mask")


def _labelled(strip: Image.Image, names: tuple[str, ...], pitch: int, caption: str) -> Image.Image:
    """``strip`` on a white sheet with each panel's name above it and ``caption`` below; panels
    narrower than ``LABEL_MIN_WIDTH`` are first enlarged (nearest, by a whole factor) so names fit."""
    k = -(-LABEL_MIN_WIDTH // pitch)  # ceil
    if k > 1:
        strip = strip.resize((strip.width * k, strip.height * k), Image.Resampling.NEAREST)
        pitch *= k
    size = max(10, min(16, pitch // 9))
    font = ImageFont.load_default(size=size)
    band = size + 6
    width = max(strip.width, int(draw_width(caption, font)) + 4)
    out = Image.new("RGB", (width, strip.height + 2 * band), "white")
    out.paste(strip, (0, band))
    draw = ImageDraw.Draw(out)
    for i, name in enumerate(names):
        draw.text((i * pitch + 2, 2), name, fill="black", font=font)
    draw.text((2, strip.height + band + 2), caption, fill="black", font=font)
    return out


def draw_width(text: str, font: ImageFont.ImageFont) -> float:
    return ImageDraw.Draw(Image.new("RGB", (1, 1))).textlength(text, font=font)
