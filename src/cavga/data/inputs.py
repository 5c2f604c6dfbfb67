"""Images handed over in memory, for the Python API (``predictor.predict``): file paths, PIL images,
numpy arrays and torch tensors, each read as the loaders read a file, (3, H, W) float32 RGB in [0, 1].

The conventions are each library's own, so that what a user already holds goes in as it is:

* a **path** (str or Path) is decoded as ``cavga predict`` decodes it (:func:`cavga.data.read_image`);
* a **PIL image** in any mode, upright by its EXIF orientation as a file of it would be;
* a **numpy array** as PIL, imageio and scikit-image give images: (H, W) grey or (H, W, C) with C
  1, 3 or 4 (alpha dropped), RGB order. OpenCV's arrays are BGR: pass ``a[..., ::-1]``;
* a **torch tensor** as torchvision gives them: (C, H, W) with C 1, 3 or 4, or (H, W).

uint8 is scaled by 255, uint16 by 65535 (either byte order), bool counts as 0 or 1; floating values
(bfloat16 and float8 tensors included) must already lie in [0, 1] (a float array of 0..255 is
refused, not guessed at). PIL images of the 32-bit modes follow the same rule: mode ``F`` as floats,
mode ``I`` (integers of no fixed scale) refused; the file reader, by contrast, scales such files by
their range (:func:`cavga.data.images._to_float_rgb`), as it always has. Every refusal is a one-line
:class:`CavgaError` that names the input (``images[3]``) and what to do.
"""

from __future__ import annotations

from pathlib import Path
from typing import Union

import numpy as np
import torch
from PIL import Image

from ..errors import CavgaError
from .geometry import to_canvas, valid_mask
from .images import _UPRIGHT, _orientation, _to_float_rgb, read_image

ImageInput = Union[str, Path, Image.Image, np.ndarray, torch.Tensor]  # noqa: UP007 - a runtime alias
_SCALE = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}
_CHANNELS = (1, 3, 4)


def image_input(item: ImageInput, name: str) -> tuple[torch.Tensor, str | None]:
    """One input as (3, H, W) float32 RGB in [0, 1], and its file path (None for an image in memory).
    ``name`` says which input an error is about (``images[3]``); a file's errors name the file."""
    if isinstance(item, (str, Path)):
        x, _ = read_image(item, None)  # (3, H, W)
        return x, str(item)
    if isinstance(item, Image.Image):
        return _from_pil(item, name), None
    if isinstance(item, np.ndarray):
        return _from_array(np.asarray(item), name, channels_last=True), None  # a masked array's data
    if isinstance(item, torch.Tensor):
        return _from_array(_tensor_array(item, name), name, channels_last=False), None
    raise CavgaError(
        f"{name}: a {type(item).__name__} is not an image; give a file path, a PIL image, a numpy array "
        "(H, W[, C]) or a torch tensor ([C,] H, W)"
    )


def _tensor_array(t: torch.Tensor, name: str) -> np.ndarray:
    """A tensor's values as numpy: bfloat16 and float8 as float32; sparse and meta tensors refused."""
    if t.layout != torch.strided or t.device.type == "meta":
        where = "a meta tensor" if t.device.type == "meta" else f"a {t.layout} tensor"
        raise CavgaError(f"{name}: {where} holds no pixels to read; give a dense tensor (t.to_dense())")
    if t.is_nested or t.is_quantized:  # torch's batch of mixed sizes; an integer code with a scale
        what, fix = ("a nested tensor", "t.unbind()") if t.is_nested else ("a quantized tensor", "t.dequantize()")
        raise CavgaError(f"{name}: {what} is not an image; give {fix}")
    t = t.detach().resolve_conj().resolve_neg()  # lazy views numpy cannot read
    if t.is_floating_point() and t.dtype not in (torch.float16, torch.float32, torch.float64):
        t = t.float()  # bfloat16, float8: numpy has no such type
    return t.cpu().numpy()


def _from_pil(im: Image.Image, name: str) -> torch.Tensor:
    """A PIL image as the file reader reads one, upright by its EXIF orientation; its 32-bit modes by
    the numpy rule (module doc)."""
    try:
        if im.mode in ("F", "I"):
            if im.mode == "I":
                raise CavgaError(
                    f"{name}: a PIL image of mode I (32-bit integers) has no fixed scale; give it as uint16 "
                    "(np.asarray(im).astype(np.uint16)) or uint8, or as floats in [0, 1] (mode F)"
                )
            return _from_array(np.asarray(im), name, channels_last=True)
        turn = _UPRIGHT.get(_orientation(im))
        im = im if im.mode != "P" else im.convert("RGBA")  # a palette's transparency, as the file reader
        im = im if turn is None else im.transpose(turn)
        return torch.from_numpy(np.ascontiguousarray(_to_float_rgb(im).transpose(2, 0, 1)))  # (3, H, W)
    except (OSError, ValueError, SyntaxError, AssertionError) as e:  # its pixels failed to load
        reason = str(e).splitlines()[0] if str(e).strip() else type(e).__name__
        raise CavgaError(f"{name}: cannot read the PIL image ({reason})") from None


def _from_array(a: np.ndarray, name: str, channels_last: bool) -> torch.Tensor:
    """(H, W), (H, W, C) (numpy) or (C, H, W) (torch) -> (3, H, W) float32 in [0, 1]."""
    layout = "(H, W, C)" if channels_last else "(C, H, W)"
    if a.ndim == 3:
        c = a.shape[2] if channels_last else a.shape[0]
        if c not in _CHANNELS:
            hint = ""
            if (a.shape[0] if channels_last else a.shape[2]) in _CHANNELS:
                hint = (
                    "; numpy images are (H, W, C): use a.transpose(1, 2, 0)"
                    if channels_last
                    else "; torch images are (C, H, W): use t.permute(2, 0, 1)"
                )
            raise CavgaError(f"{name}: an image {layout} has 1, 3 or 4 channels, not {c} (shape {a.shape}){hint}")
        a = a if channels_last else a.transpose(1, 2, 0)  # (H, W, C)
    elif a.ndim == 2:
        a = a[:, :, None]  # (H, W, 1)
    else:
        raise CavgaError(f"{name}: an image is (H, W) or {layout}, not an array of shape {a.shape}")
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise CavgaError(f"{name}: an empty image (shape {a.shape})")
    a = _as_unit_float(a, name)  # (H, W, C)
    if a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)  # grey as RGB, as the file reader makes it
    return torch.from_numpy(np.ascontiguousarray(a[:, :, :3].transpose(2, 0, 1)))  # (3, H, W), alpha dropped


def _as_unit_float(a: np.ndarray, name: str) -> np.ndarray:
    """Values scaled to float32 [0, 1] by the dtype's convention; floats outside [0, 1] refused."""
    native = a.dtype.newbyteorder("=")  # big-endian uint16 (PIL's I;16B) as uint16
    if native in _SCALE:
        return a.astype(np.float32) / np.float32(_SCALE[native])
    if a.dtype == np.bool_:
        return a.astype(np.float32)
    if not np.issubdtype(a.dtype, np.floating):
        raise CavgaError(f"{name}: pixel type {a.dtype} is not read; give uint8, uint16, bool or floats in [0, 1]")
    a = a.astype(np.float32)
    if not np.isfinite(a).all():
        raise CavgaError(f"{name}: the image holds NaN or infinite values")
    lo, hi = float(a.min()), float(a.max())
    if lo < 0.0 or hi > 1.0:
        raise CavgaError(
            f"{name}: float pixels must lie in [0, 1], these run from {lo:.8g} to {hi:.8g}"
            + ("; 0..255 values: divide by 255, or give uint8" if 2.0 <= hi <= 255.0 and lo >= 0.0 else "")
        )
    return a


def model_input(
    items: list[ImageInput], size: int, resize: str, first: int = 0
) -> tuple[torch.Tensor, torch.Tensor | None, list[tuple[int, int]], list[str | None]]:
    """Inputs as the model's batch (B, 3, S, S), their content maps (B, 1, S, S) where ``resize`` is
    pad or center (else None), each one's own (H, W), and each one's path (None in memory).
    ``first``: the index of ``items[0]`` among all the inputs, for error messages."""
    loaded = [image_input(item, f"images[{first + k}]") for k, item in enumerate(items)]
    sizes = [(int(x.shape[1]), int(x.shape[2])) for x, _ in loaded]
    x = torch.stack([to_canvas(x, size, resize) for x, _ in loaded])  # (B, 3, S, S)
    valid = torch.stack([valid_mask(hw, size, resize) for hw in sizes]) if resize != "stretch" else None
    return x, valid, sizes, [path for _, path in loaded]


def check_model_batch(x: object, size: int) -> None:
    """Refuse what ``predict_batch`` cannot answer for rightly: anything but a floating (B, 3, S, S)
    tensor at the run's size S (``predict`` takes images of any kind and size, and resizes them)."""
    want = f"a (B, 3, {size}, {size}) float tensor in [0, 1]"
    if not isinstance(x, torch.Tensor):
        raise CavgaError(f"predict_batch takes {want}, not a {type(x).__name__}; predict() takes images of any kind")
    if x.ndim != 4 or x.shape[1] != 3 or tuple(x.shape[2:]) != (size, size):
        raise CavgaError(
            f"predict_batch takes {want}, not one of shape {tuple(x.shape)}; predict() resizes images to the run's size"
        )
    if not x.is_floating_point():
        raise CavgaError(f"predict_batch takes {want}, not {x.dtype}; predict() scales uint8 and uint16 images")
