"""The one-class protocol of the paper's Table 7 (following ADGAN [12]) on MNIST, Fashion-MNIST,
CIFAR-10 and scikit-learn's 8x8 digits.

One class K (``data.category``, an index or a class name) is normal: training uses the training
images of class K only; the test set is every test image, class K normal (label 0), every other
class anomalous (label 1, its class name as the defect type). There are no pixel masks.

The files are torchvision's on-disk layouts (``download=False``: nothing is fetched):

* ``mnist``: ``ROOT/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte`` (or ``.gz``)
* ``fashion-mnist``: the same names in ``ROOT/FashionMNIST/raw``
* ``cifar10``: ``ROOT/cifar-10-batches-py/{data_batch_1..5,test_batch}``
* ``digits``: scikit-learn's ``load_digits`` (no files; a ``data.root`` is ignored, with a warning),
  split into train/test by a seeded shuffle (``data.train_fraction``, ``data.seed``)

Records address images inside the array files (``FILE#INDEX``, :mod:`cavga.data.arrays`).
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np

from ..errors import CavgaError
from .arrays import DIGITS_SOURCE, array_ref, load_array
from .records import GOOD, Record, Split, _check_fraction, _info

ONE_CLASS_LAYOUTS = ("mnist", "fashion-mnist", "cifar10", "digits")
CLASSES: dict[str, tuple[str, ...]] = {
    "mnist": tuple(str(i) for i in range(10)),
    "digits": tuple(str(i) for i in range(10)),
    "fashion-mnist": (
        "t-shirt_top",
        "trouser",
        "pullover",
        "dress",
        "coat",
        "sandal",
        "shirt",
        "sneaker",
        "bag",
        "ankle_boot",
    ),
    "cifar10": ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
}
_FOLDERS = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}
_TV_CLASS = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST", "cifar10": "CIFAR10"}


def normal_class(layout: str, category: str | int | None) -> int:
    """The index of the normal class named by ``category``: an index 0..9 or a class name."""
    names = CLASSES[layout]
    listing = ", ".join(f"{i}={n}" for i, n in enumerate(names))
    if category is None:
        raise CavgaError(f"data.category is required for the {layout} layout: the normal class ({listing})")
    key = str(category).strip().lower().replace("/", "_").replace(" ", "_").replace("-", "_")
    if key.isdigit() and int(key) < len(names):
        return int(key)
    for i, n in enumerate(names):
        if key == n.replace("-", "_"):
            return i
    raise CavgaError(f"data.category: {category!r} is not a class of {layout} ({listing})")


def _missing(root: Path, layout: str, expected: Path) -> CavgaError:
    what = _TV_CLASS[layout]
    return CavgaError(
        f"{root}: {what} not found (expected {expected}); put torchvision's files there "
        f"(torchvision.datasets.{what}(root, download=True) on a machine with internet)"
    )


def _root(root: str | Path | None, layout: str) -> Path:
    if root is None:
        raise CavgaError(f"data.root is not set: point it at the folder holding torchvision's {_TV_CLASS[layout]} data")
    return Path(root).expanduser().resolve()


def _idx_files(root: Path, layout: str, part: str) -> Path:
    """The images file of ``part`` ("train" or "t10k"): ROOT/<Folder>/raw, ROOT/raw or ROOT, plain or .gz."""
    folder = _FOLDERS[layout]
    name = f"{part}-images-idx3-ubyte"
    for base in (root / folder / "raw", root / "raw", root):
        for candidate in (base / name, base / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    raise _missing(root, layout, root / folder / "raw" / name)


def _cifar_files(root: Path) -> tuple[list[Path], Path]:
    for base in (root / "cifar-10-batches-py", root):
        if (base / "test_batch").is_file():
            train = [base / f"data_batch_{i}" for i in range(1, 6)]
            for p in train:
                if not p.is_file():
                    raise CavgaError(f"{p}: CIFAR-10 training batch not found")
            return train, base / "test_batch"
    raise _missing(root, "cifar10", root / "cifar-10-batches-py" / "test_batch")


def _records(source: str, indices: np.ndarray, labels: np.ndarray, k: int, names: tuple[str, ...]) -> list[Record]:
    return [
        Record(array_ref(source, i), None, int(labels[i] != k), GOOD if labels[i] == k else names[int(labels[i])])
        for i in indices
    ]


def one_class_split(
    layout: str, root: str | Path | None, category: str | int | None, train_fraction: float = 0.8, seed: int = 0
) -> Split:
    """The one-class split of ``layout`` with ``category`` as the normal class (see the module docstring)."""
    if layout not in ONE_CLASS_LAYOUTS:
        raise CavgaError(f"data.layout: {layout!r} is not a one-class layout ({', '.join(ONE_CLASS_LAYOUTS)})")
    k = normal_class(layout, category)
    names = CLASSES[layout]
    train: list[Record] = []
    test: list[Record] = []
    extra: dict[str, object] = {}
    if layout == "digits":
        _check_fraction("train_fraction", train_fraction)
        _, labels = load_array(DIGITS_SOURCE)
        order = list(range(len(labels)))
        random.Random(seed).shuffle(order)
        n_train = round(train_fraction * len(order))
        train_idx = np.array(sorted(i for i in order[:n_train] if labels[i] == k), dtype=np.int64)
        test_idx = np.array(sorted(order[n_train:]), dtype=np.int64)
        train = _records(DIGITS_SOURCE, train_idx, labels, k, names)
        test = _records(DIGITS_SOURCE, test_idx, labels, k, names)
        base = Path(DIGITS_SOURCE)
        extra = {"seed": seed, "train_fraction": train_fraction}
    elif layout == "cifar10":
        base = _root(root, layout)
        train_files, test_file = _cifar_files(base)
        for f in train_files:
            _, labels = load_array(str(f))
            train += _records(str(f), np.flatnonzero(labels == k), labels, k, names)
        _, labels = load_array(str(test_file))
        test = _records(str(test_file), np.arange(len(labels)), labels, k, names)
    else:
        base = _root(root, layout)
        train_file, test_file = _idx_files(base, layout, "train"), _idx_files(base, layout, "t10k")
        _, labels = load_array(str(train_file))
        train = _records(str(train_file), np.flatnonzero(labels == k), labels, k, names)
        _, labels = load_array(str(test_file))
        test = _records(str(test_file), np.arange(len(labels)), labels, k, names)
    if not train:
        raise CavgaError(f"{base}: no training images of class {k} ({names[k]})")
    info = _info(layout, base, train, test, category=names[k], normal_class=k, protocol="one-class", **extra)
    info["masks"] = False
    return Split(train, test, info)
