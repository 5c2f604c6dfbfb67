"""Loading images and masks: decoding any PIL mode to RGB floats, turning them upright by their EXIF
orientation, resizing, the mask rule, and checking that images decode. Every unreadable file is a
one-line :class:`CavgaError` naming it."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..errors import CavgaError
from .arrays import array_image_size, parse_ref, read_array_image
from .geometry import to_canvas
from .listing import BROKEN_LINK
from .records import Record


def _reason(e: BaseException) -> str:
    return str(e).splitlines()[0] if str(e).strip() else type(e).__name__


# EXIF orientation (tag 0x0112) -> the transpose that makes the pixels upright, as a viewer shows them
# (the table of PIL.ImageOps.exif_transpose, which the tests check it against)
_ORIENTATION = 0x0112
_UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def _orientation(im: Image.Image) -> int:
    """The EXIF orientation an opened, not yet decoded, file records in its header; 1 (upright) where none.

    Images are read upright, as viewers, OpenCV's ``imread`` and the people who draw masks see them
    (a phone or camera stores a portrait shot as landscape pixels plus this tag). Read from the header
    only, so that :func:`image_size_of` and the decoder agree without decoding: a PNG's ``eXIf`` chunk
    placed after the pixel data, which the PNG extension advises against, is not looked for.
    """
    if im.format == "TIFF":
        return 1  # Pillow (>= 11) opens a TIFF upright itself: its size at open, its pixels at load
    if im.format == "PNG" and "exif" not in im.info:
        return 1  # Pillow would decode the whole file to look for a late eXIf chunk
    try:
        value = im.getexif().get(_ORIENTATION, 1)
    except (OSError, SyntaxError, ValueError, TypeError, KeyError):
        return 1  # a malformed EXIF block: the pixels as stored
    return value if value in _UPRIGHT else 1


@contextmanager
def _pil_open(path: str | Path) -> Iterator[Image.Image]:
    """``Image.open``, its warnings (a decompression-bomb size, a broken EXIF block) naming the file."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        im = Image.open(path)
    for w in caught:
        warnings.warn(f"{path}: {w.message}", w.category, stacklevel=4)
    with im:
        yield im


def _open(path: str | Path, what: str) -> Image.Image:
    """Open and fully decode a file, upright by its EXIF orientation, turning every PIL failure into a
    one-line CavgaError."""
    try:
        with _pil_open(path) as im:
            turn = _UPRIGHT.get(_orientation(im))
            im.load()
            out = im.copy() if im.mode != "P" else im.convert("RGBA")
            return out if turn is None else out.transpose(turn)
    except FileNotFoundError:
        raise CavgaError(_not_found(path, what)) from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise CavgaError(f"{path}: cannot read {what} ({_reason(e)})") from None


def _not_found(path: str | Path, what: str) -> str:
    """A missing file's message; a symbolic link whose target is gone is said to be one."""
    return f"{path}: {BROKEN_LINK}" if Path(path).is_symlink() else f"{path}: {what} file not found"


def image_size_of(path: str | Path) -> tuple[int, int]:
    """(height, width) of an image file as :func:`load_image` reads it (upright by its EXIF orientation),
    reading only its header (or of an array image ``FILE#INDEX``)."""
    if parse_ref(path) is not None:
        return array_image_size(path)
    try:
        with _pil_open(path) as im:
            w, h = im.size
            if _orientation(im) >= 5:  # a quarter turn or a transposition: the sides swap
                w, h = h, w
    except FileNotFoundError:
        raise CavgaError(_not_found(path, "image")) from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise CavgaError(f"{path}: cannot read image ({_reason(e)})") from None
    return h, w


def _to_float_rgb(im: Image.Image) -> np.ndarray:
    """Any PIL mode as an (H, W, 3) float32 array in [0, 1]."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        a = np.asarray(im).astype(np.float32)  # (H, W)
        a = a / (65535.0 if a.max() > 255 or im.mode.startswith("I;16") else 255.0)
        a = np.clip(a, 0.0, 1.0)
        return np.repeat(a[:, :, None], 3, axis=2)
    if im.mode == "F":
        a = np.asarray(im).astype(np.float32)  # (H, W)
        a = a / 255.0 if a.max() > 1.0 else a
        return np.repeat(np.clip(a, 0.0, 1.0)[:, :, None], 3, axis=2)
    if im.mode != "RGB":
        im = im.convert("RGB")  # L, LA, RGBA (alpha dropped), CMYK, YCbCr, 1
    return np.asarray(im, dtype=np.float32) / 255.0  # (H, W, 3)


def read_image(
    path: str | Path, image_size: int | None, resize: str = "stretch"
) -> tuple[torch.Tensor, tuple[int, int]]:
    """:func:`load_image` and the image's own (height, width), from one decode."""
    if parse_ref(path) is not None:  # an image inside an array file (cavga.data.arrays)
        x = read_array_image(path)  # (3, H, W)
    else:
        x = torch.from_numpy(np.ascontiguousarray(_to_float_rgb(_open(path, "image")).transpose(2, 0, 1)))  # (3, H, W)
    size = (x.shape[1], x.shape[2])
    return (x if image_size is None else to_canvas(x, image_size, resize)), size


def load_image(path: str | Path, image_size: int | None, resize: str = "stretch") -> torch.Tensor:
    """(3, S, S) float32 RGB in [0, 1]; ``image_size=None`` keeps the image's own (3, H, W).

    Grayscale, palette, RGBA (alpha dropped) and 16-bit images become 3-channel RGB; the resize is
    bilinear with antialiasing, and ``resize`` says whether the aspect ratio is kept
    (:mod:`cavga.data.geometry`).
    """
    return read_image(path, image_size, resize)[0]


_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N", "I")
_warned_01_mask = False


def mask_defect(a: np.ndarray, full_scale: float, path: str | Path = "mask") -> np.ndarray:
    """The mask rule, in one place: which pixels of a mask's values ``a`` (H, W) are defect.

    * a binary mask (values 0 and one other value): every non-zero pixel;
    * a soft mask (more values): pixels above half of the type's range ``full_scale`` (255 for 8-bit,
      65535 for 16-bit, 1.0 for float masks), never relative to the mask's own maximum.

    A mask stored as 0/1 (rather than 0/255) is read correctly but warned about once, since viewers
    show it as black and other tools read it as empty.
    """
    global _warned_01_mask
    top = a.max() if a.size else 0
    binary = bool(np.all((a == 0) | (a == top)))
    if binary and top == 1 and full_scale > 1 and not _warned_01_mask:
        _warned_01_mask = True
        warnings.warn(
            f"{path}: mask values are 0 and 1 (not 0 and {int(full_scale)}); read as defect where non-zero "
            "(further such masks are not reported)",
            stacklevel=3,
        )
    return a != 0 if binary else a > full_scale / 2


def _check_mask_size(
    path: str | Path, size: tuple[int, int], expected: tuple[int, int], image_path: str | Path | None
) -> None:
    """A mask of another (height, width) than its image's is an error naming both."""
    if tuple(size) != tuple(expected):
        of = f"image {image_path}" if image_path is not None else "its image"
        raise CavgaError(f"{path}: mask is {size[1]}x{size[0]} but {of} is {expected[1]}x{expected[0]}")


def load_mask(
    path: str | Path,
    image_size: int | None,
    expected_size: tuple[int, int] | None = None,
    image_path: str | Path | None = None,
    resize: str = "stretch",
) -> torch.Tensor:
    """(1, S, S) float32 in {0, 1} by :func:`mask_defect`'s rule, then a nearest resize placed as
    its image is (``resize``).

    ``expected_size`` is the image's own (height, width); a mask of another size is an error naming
    the mask (and ``image_path`` when given).
    """
    im = _open(path, "mask")
    if expected_size is not None:
        _check_mask_size(path, (im.height, im.width), expected_size, image_path)
    if im.mode == "1":
        m = np.asarray(im, dtype=bool)
    elif im.mode in _SIXTEEN_BIT:
        m = mask_defect(np.asarray(im).astype(np.int64), 65535.0, path)
    elif im.mode == "F":
        m = mask_defect(np.asarray(im).astype(np.float64), 1.0, path)
    else:
        m = mask_defect(np.asarray(im.convert("L")), 255.0, path)  # (H, W)
    t = torch.from_numpy(np.ascontiguousarray(m)).to(torch.float32)[None]  # (1, H, W)
    return t if image_size is None else to_canvas(t, image_size, resize, "nearest-exact")  # (1, S, S)


def verify_masks(records: list[Record]) -> None:
    """Check, from the files' headers, that every record's mask has its image's size: a mismatch in
    the test set stops ``cavga train`` before it trains, not ``cavga evaluate`` after."""
    for r in records:
        if r.mask_path is not None:
            _check_mask_size(r.mask_path, image_size_of(r.mask_path), image_size_of(r.image_path), r.image_path)


def verify_images(records: list[Record]) -> None:
    """Open and fully decode every record's image once: a corrupt file is an error naming it, before
    training starts (a shuffled loader with ``drop_last`` might otherwise never read it)."""
    for r in records:
        if parse_ref(r.image_path) is not None:
            array_image_size(r.image_path)  # the array loads and holds the index
        else:
            _open(r.image_path, "image")
