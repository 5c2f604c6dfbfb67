"""Images stored in one array file (MNIST's idx files, CIFAR-10's pickled batches, scikit-learn's
digits), addressed by a record path ``FILE#INDEX``.

The one-class layouts (:mod:`cavga.data.oneclass`) list such references instead of image files;
:mod:`cavga.data.images` reads them here, so the loader, evaluation and prediction code is unchanged.
Each array file is read once per process and kept (:func:`load_array`): 60k MNIST images are 47 MB.
"""

from __future__ import annotations

import functools
import gzip
import pickle
from pathlib import Path

import numpy as np
import torch

from ..errors import CavgaError

SEP = "#"
DIGITS_SOURCE = "sklearn-digits"  # scikit-learn's 8x8 digits (load_digits), shipped with the package
CIFAR_BATCHES = ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch")


def _kind(source: str) -> str | None:
    """The array format of a source file by its name: "idx", "cifar", "digits", or None (not an array)."""
    name = Path(source).name
    if name == DIGITS_SOURCE:
        return "digits"
    if name.endswith(("-ubyte", "-ubyte.gz")):
        return "idx"
    if name in CIFAR_BATCHES:
        return "cifar"
    return None


def array_ref(source: str | Path, index: int) -> str:
    """The record path of image ``index`` of an array file."""
    return f"{source}{SEP}{int(index)}"


def parse_ref(path: str | Path) -> tuple[str, int] | None:
    """(source, index) of an array reference ``FILE#INDEX``; None for an ordinary image path."""
    source, sep, index = str(path).rpartition(SEP)
    if not sep or not index.isdigit() or _kind(source) is None:
        return None
    return source, int(index)


def _read_idx(path: Path) -> np.ndarray:
    """An idx file (MNIST's format, optionally gzipped) as a uint8 array: (N, H, W) images or (N,) labels."""
    try:
        raw = (gzip.open if path.suffix == ".gz" else open)(path, "rb").read()
    except FileNotFoundError:
        raise CavgaError(f"{path}: file not found") from None
    except (OSError, EOFError) as e:
        raise CavgaError(f"{path}: cannot read idx file ({e})") from None
    if len(raw) < 8 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise CavgaError(f"{path}: not an idx file of unsigned bytes (bad magic number)")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    offset = 4 + 4 * ndim
    if len(raw) - offset != int(np.prod(dims)):
        raise CavgaError(f"{path}: idx file is truncated ({len(raw) - offset} bytes of data for shape {dims})")
    return np.frombuffer(raw, dtype=np.uint8, offset=offset).reshape(dims)


class _ArraysOnly(pickle.Unpickler):
    """An unpickler that builds numpy arrays and plain containers and nothing else: a pickle may name
    any function to call, so a batch file from elsewhere could otherwise run code when it is read."""

    ALLOWED = {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("copyreg", "_reconstructor"),  # Python 2's pickles of arrays: it builds only a class allowed here
        ("builtins", "object"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refused to load {module}.{name}: a CIFAR-10 batch holds only arrays")
        return super().find_class(module, name)


def _read_cifar(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """A CIFAR-10 python batch: (N, 32, 32, 3) uint8 images and (N,) labels, read by an unpickler that
    builds arrays and nothing else (:class:`_ArraysOnly`)."""
    try:
        with open(path, "rb") as f:
            d = _ArraysOnly(f, encoding="bytes").load()
        data = np.asarray(d[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        labels = np.asarray(d[b"labels"], dtype=np.int64)
    except FileNotFoundError:
        raise CavgaError(f"{path}: file not found") from None
    except (OSError, EOFError, pickle.UnpicklingError, KeyError, ValueError, TypeError) as e:
        raise CavgaError(f"{path}: not a CIFAR-10 python batch ({type(e).__name__}: {e})") from None
    if len(labels) != len(data):
        raise CavgaError(f"{path}: {len(data)} images but {len(labels)} labels")
    return np.ascontiguousarray(data), labels


def _idx_labels_file(images: Path) -> Path:
    return images.with_name(images.name.replace("images-idx3", "labels-idx1"))


@functools.lru_cache(maxsize=16)
def load_array(source: str) -> tuple[np.ndarray, np.ndarray]:
    """(images, labels) of an array file, read once: images (N, H, W) or (N, H, W, 3) uint8, labels (N,)."""
    kind = _kind(source)
    if kind == "digits":
        from sklearn.datasets import load_digits

        d = load_digits()
        images = np.round(d.images * (255.0 / 16.0)).astype(np.uint8)  # (N, 8, 8), 0..16 -> 0..255
        return images, d.target.astype(np.int64)
    path = Path(source)
    if kind == "cifar":
        return _read_cifar(path)
    if kind == "idx":
        images = _read_idx(path)
        labels = _read_idx(_idx_labels_file(path))
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise CavgaError(f"{path}: {images.shape} images do not match {labels.shape} labels")
        return images, labels.astype(np.int64)
    raise CavgaError(f"{source}: not an array file cavga can read")


def _entry(path: str | Path) -> np.ndarray:
    source, index = parse_ref(path)  # type: ignore[misc]
    images, _ = load_array(source)
    if index >= len(images):
        raise CavgaError(f"{path}: index {index} is beyond the {len(images)} images of {source}")
    return images[index]


def read_array_image(path: str | Path) -> torch.Tensor:
    """(3, H, W) float32 RGB in [0, 1]; grayscale is repeated to three channels, as for image files."""
    a = _entry(path).astype(np.float32) / 255.0  # (H, W) or (H, W, 3)
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)  # (H, W, 3)
    return torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))  # (3, H, W)


def array_image_size(path: str | Path) -> tuple[int, int]:
    """(height, width) of an array image."""
    h, w = _entry(path).shape[:2]
    return int(h), int(w)
