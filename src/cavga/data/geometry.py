"""Where an image sits in the model's square input (``data.resize``).

* ``stretch`` (the default, and what the paper's square crops need): the image is resized to fill
  the S x S input, whatever its aspect ratio.
* ``pad``: the image is resized whole with its aspect ratio kept, its long side S, centred, and the
  rest of the square filled with ``PAD_VALUE`` (issue 8, item 4: MTD's tiles are 1.0 to 2.8 times
  as long as they are wide, and stretching them distorts their defects).
* ``center``: as ``pad``, except that an image no larger than S x S is not resampled at all: its
  own pixels sit centred in the square (MNIST's 28 x 28 digits in a 32 x 32 input, as LeNet-5
  took them, rather than blurred by a 1.14x upsampling). Larger images shrink as under ``pad``.

Each image has one content box, (top, left, height, width) in the square. Training ignores the
padding (:func:`valid_mask`: the input's padding is pasted into the reconstruction, so neither L_R
nor the discriminator sees what the decoder draws there, and L_ae and L_cga average over the
latent cells that hold content), and every map goes back to its image by cropping the box and
upsampling it to the image's own size (:func:`from_canvas`), so metrics never see the padding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..config import RESIZE_MODES
from ..errors import CavgaError

PAD_VALUE = 0.0  # black: BCE(0, 0) = 0, and the pasted padding gives no gradient

Box = tuple[int, int, int, int]  # (top, left, height, width) of the content in the S x S input


def check_resize(mode: str) -> str:
    if mode not in RESIZE_MODES:
        raise CavgaError(f"data.resize: {mode!r} is not one of {', '.join(RESIZE_MODES)}")
    return mode


def content_box(size: tuple[int, int], s: int, mode: str) -> Box:
    """The box an image of (height, width) ``size`` fills in the S x S input."""
    h, w = size
    if check_resize(mode) == "center" and h <= s and w <= s:
        return ((s - h) // 2, (s - w) // 2, h, w)
    if mode == "stretch" or h == w:
        return (0, 0, s, s)
    scale = s / max(h, w)
    ch, cw = max(1, min(s, round(h * scale))), max(1, min(s, round(w * scale)))
    return ((s - ch) // 2, (s - cw) // 2, ch, cw)


def to_canvas(x: torch.Tensor, s: int, mode: str, interpolation: str = "bilinear") -> torch.Tensor:
    """(C, H, W) resized into the S x S input: (C, S, S). Bilinear with antialiasing for images,
    ``nearest-exact`` for masks."""
    top, left, ch, cw = content_box(tuple(x.shape[1:]), s, mode)
    if tuple(x.shape[1:]) != (ch, cw):
        extra = {"align_corners": False, "antialias": True} if interpolation == "bilinear" else {}
        x = F.interpolate(x[None], size=(ch, cw), mode=interpolation, **extra)[0]  # (C, ch, cw)
        x = x.clamp_(0.0, 1.0) if interpolation == "bilinear" else x
    if (ch, cw) == (s, s):
        return x
    canvas = x.new_full((x.shape[0], s, s), PAD_VALUE)  # (C, S, S)
    canvas[:, top : top + ch, left : left + cw] = x
    return canvas


def valid_mask(size: tuple[int, int], s: int, mode: str) -> torch.Tensor:
    """(1, S, S) float: 1 on the content of an image of (height, width) ``size``, 0 on padding."""
    return box_mask(content_box(size, s, mode), s)


def box_mask(box: Box, s: int) -> torch.Tensor:
    """(1, S, S) float: 1 inside ``box``, 0 outside."""
    top, left, ch, cw = box
    v = torch.zeros((1, s, s), dtype=torch.float32)
    v[:, top : top + ch, left : left + cw] = 1.0
    return v


def crop(m: torch.Tensor, box: Box) -> torch.Tensor:
    """The content of an (..., S, S) map: (..., height, width) of ``box``."""
    top, left, ch, cw = box
    return m[..., top : top + ch, left : left + cw]


def from_canvas(m: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    """A map (S, S) at the model's resolution back at an image's own (H, W): its content box,
    resized bilinearly (the map is upsampled to the image, never the image's mask shrunk)."""
    content = crop(m, content_box(tuple(size), m.shape[-1], mode)).float()  # (ch, cw)
    if tuple(content.shape) == tuple(size):
        return content
    out = F.interpolate(content[None, None], size=tuple(size), mode="bilinear", align_corners=False)
    return out[0, 0]  # (H, W)


def paste_padding(x_hat: torch.Tensor, x: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
    """The reconstruction (B, 3, S, S) with the input's padding pasted in: the decoder's padding is
    never scored, by L_R, the discriminator or the residual. ``valid`` None: ``x_hat`` as it is."""
    return x_hat if valid is None else valid * x_hat + (1 - valid) * x


def cell_weights(valid: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """(B, 1, h, w): the share of each attention cell that holds content, from ``valid`` (B, 1, S, S)."""
    return F.adaptive_avg_pool2d(valid, grid)
