"""Data sets on disk: listing them into train/test records, and loading images and masks as tensors.

Three layouts (see docs/data.md for the trees):

* ``mvtec``: MVTec AD, ``ROOT/<category>/{train,test,ground_truth}``; the split is the data set's own.
* ``mtd``: Magnetic Tile Defect, ``ROOT/MT_<class>/Imgs/<name>.jpg`` + ``<name>.png`` masks; a seeded
  split of the defect-free images (``MT_Free``) into train/test, every defective image in test.
* ``folder``: a user's own data, ``ROOT/good`` + one folder per defect type, optional masks in
  ``ROOT/ground_truth``; split like ``mtd`` (or the user's own ``ROOT/train`` + ``ROOT/test``).

Listing never opens an image; corrupt files are reported when loaded. Every problem with the user's
files is a one-line :class:`CavgaError` naming the file or folder.
"""

from __future__ import annotations

import random
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..config import LAYOUTS, DataConfig
from ..errors import CavgaError

MVTEC_CATEGORIES: tuple[str, ...] = (
    "bottle",
    "cable",
    "capsule",
    "carpet",
    "grid",
    "hazelnut",
    "leather",
    "metal_nut",
    "pill",
    "screw",
    "tile",
    "toothbrush",
    "transistor",
    "wood",
    "zipper",
)
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
MASK_FOLDERS = ("ground_truth", "masks")  # folder layout: where optional masks live
GOOD = "good"


# --------------------------------------------------------------------------------------------
# Records and splits


@dataclass(frozen=True)
class Record:
    """One image on disk, before loading."""

    image_path: str
    mask_path: str | None  # None: no pixel mask (normal images, or anomalous without a mask)
    label: int  # 0 normal, 1 anomalous
    defect_type: str  # "good" for normal images

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict[str, Any]) -> Record:
        return Record(str(d["image_path"]), d.get("mask_path"), int(d["label"]), str(d["defect_type"]))


@dataclass
class Split:
    """Train and test records, and ``info`` (layout, root, seed, fractions, counts) for the results."""

    train: list[Record]
    test: list[Record]
    info: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "info": self.info,
            "train": [r.to_dict() for r in self.train],
            "test": [r.to_dict() for r in self.test],
        }

    @staticmethod
    def from_dict(d: dict[str, Any]) -> Split:
        return Split(
            [Record.from_dict(r) for r in d["train"]],
            [Record.from_dict(r) for r in d["test"]],
            dict(d.get("info", {})),
        )


def _counts(train: list[Record], test: list[Record]) -> dict[str, int]:
    n_train_anom = sum(r.label for r in train)
    n_test_anom = sum(r.label for r in test)
    return {
        "train_normal": len(train) - n_train_anom,
        "train_anomalous": n_train_anom,
        "test_normal": len(test) - n_test_anom,
        "test_anomalous": n_test_anom,
    }


def _info(layout: str, root: Path, train: list[Record], test: list[Record], **extra: Any) -> dict[str, Any]:
    defects = sorted({r.defect_type for r in train + test if r.label == 1})
    return {"layout": layout, "root": str(root), **extra, "defect_types": defects, "counts": _counts(train, test)}


# --------------------------------------------------------------------------------------------
# Listing folders


def _is_image(p: Path) -> bool:
    return p.suffix.lower() in IMAGE_EXTENSIONS


def _list_images(folder: Path) -> list[Path]:
    """Image files in ``folder``, sorted by name; anything else is skipped with a warning."""
    out = []
    for p in sorted(folder.iterdir(), key=lambda q: q.name):
        if p.is_file() and _is_image(p):
            out.append(p)
        elif p.is_file():
            warnings.warn(f"{p}: not an image file (by its extension); skipped", stacklevel=3)
        elif p.is_symlink() and not p.exists():
            warnings.warn(f"{p}: broken symbolic link (its target does not exist); skipped", stacklevel=3)
        elif p.is_dir():
            warnings.warn(f"{p}: unexpected folder among images; skipped", stacklevel=3)
        else:
            warnings.warn(f"{p}: not a regular file; skipped", stacklevel=3)
    return out


def _subfolders(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")), key=lambda p: p.name)


def _check_root(root: str | Path | None) -> Path:
    if root is None:
        raise CavgaError("data.root is not set: point it at a data set folder (or use the demo data)")
    path = Path(root).expanduser()
    if not path.exists():
        raise CavgaError(f"{path}: data folder not found")
    if not path.is_dir():
        raise CavgaError(f"{path}: not a folder")
    return path.resolve()


def _check_fraction(name: str, value: float, low_open: bool = True) -> float:
    ok = (0.0 < value <= 1.0) if low_open else (0.0 <= value <= 1.0)
    if not ok:
        raise CavgaError(f"{name}: {value} is outside {'(0, 1]' if low_open else '[0, 1]'}")
    return float(value)


def _mask_index(folder: Path, suffixes: tuple[str, ...]) -> dict[str, Path]:
    """Masks in ``folder`` keyed by the stem of the image they belong to (``<stem><suffix>.<ext>``)."""
    index: dict[str, Path] = {}
    if not folder.is_dir():
        return index
    for p in _list_images(folder):
        for suffix in suffixes:
            if suffix and p.stem.endswith(suffix):
                index.setdefault(p.stem[: -len(suffix)], p)
                break
            if not suffix:
                index.setdefault(p.stem, p)
                break
        else:
            raise CavgaError(f"{p}: mask name does not end in {' or '.join(s + '.png' for s in suffixes)}")
    return index


def _fixed_split(base: Path, require_masks: bool, mask_folders: tuple[str, ...], suffixes: tuple[str, ...]):
    """``base/train/good`` and ``base/test/<good|defect>`` with masks in ``base/<mask folder>/<defect>``."""
    train_good = base / "train" / GOOD
    if not train_good.is_dir():
        raise CavgaError(f"{train_good}: folder not found (no training images)")
    train = [Record(str(p), None, 0, GOOD) for p in _list_images(train_good)]
    if not train:
        raise CavgaError(f"{train_good}: no training images")
    for extra in _subfolders(base / "train"):
        if extra.name != GOOD:
            warnings.warn(f"{extra}: training uses only train/{GOOD}; folder ignored", stacklevel=3)
    test_dir = base / "test"
    if not test_dir.is_dir():
        raise CavgaError(f"{test_dir}: folder not found (no test images)")
    mask_root = next((base / m for m in mask_folders if (base / m).is_dir()), None)
    test: list[Record] = []
    used: set[Path] = set()
    for sub in _subfolders(test_dir):
        images = _list_images(sub)
        if sub.name == GOOD:
            test += [Record(str(p), None, 0, GOOD) for p in images]
            continue
        masks = _mask_index(mask_root / sub.name, suffixes) if mask_root is not None else {}
        for p in images:
            m = masks.get(p.stem)
            if m is None and require_masks:
                want = (mask_root or base / mask_folders[0]) / sub.name / f"{p.stem}{suffixes[0]}.png"
                raise CavgaError(f"{p}: anomalous test image has no mask (expected {want})")
            if m is not None:
                used.add(m)
            test.append(Record(str(p), str(m) if m else None, 1, sub.name))
    if not test:
        raise CavgaError(f"{test_dir}: no test images")
    if mask_root is not None:
        for sub in _subfolders(mask_root):
            for m in _list_images(sub):
                if m not in used:
                    raise CavgaError(f"{m}: mask has no matching image in {test_dir / sub.name}")
    return train, test


# --------------------------------------------------------------------------------------------
# Layouts


def mvtec_split(root: str | Path, category: str | None) -> Split:
    """MVTec AD's own split of one category; ``root`` holds categories or is a category folder."""
    path = _check_root(root)
    if (path / "train").is_dir() and (path / "test").is_dir():
        base = path
        category = category or path.name
    else:
        found = [p.name for p in _subfolders(path) if (p / "train").is_dir()]
        if category is None:
            listing = ", ".join(found) or "none"
            raise CavgaError(f"{path}: data.category is required (categories found: {listing})")
        base = path / category
        if not base.is_dir():
            listing = ", ".join(found) or "none"
            raise CavgaError(f"{base}: category {category!r} not found (categories found: {listing})")
    train, test = _fixed_split(base, True, ("ground_truth",), ("_mask",))
    return Split(train, test, _info("mvtec", base, train, test, category=category))


def _seeded_normals(normals: list[Record], train_fraction: float, seed: int) -> tuple[list[Record], list[Record]]:
    """Shuffle the sorted normals with ``random.Random(seed)``; the first round(f * n) train."""
    order = sorted(normals, key=lambda r: r.image_path)
    random.Random(seed).shuffle(order)
    n_train = min(len(order), max(1, round(train_fraction * len(order))))
    return order[:n_train], order[n_train:]


def mtd_split(root: str | Path, train_fraction: float = 0.8, seed: int = 0) -> Split:
    """Magnetic Tile Defect: ``train_fraction`` of MT_Free trains; the rest and all defects test."""
    path = _check_root(root)
    _check_fraction("train_fraction", train_fraction)
    classes = [p for p in _subfolders(path) if p.name.startswith("MT_")]
    if not classes:
        raise CavgaError(f"{path}: no MT_<class> folders (is this the Magnetic Tile Defect data set?)")
    if not any(c.name == "MT_Free" for c in classes):
        raise CavgaError(f"{path / 'MT_Free'}: folder not found (no defect-free training images)")
    normals: list[Record] = []
    anomalous: list[Record] = []
    for cls in classes:
        imgs = cls / "Imgs"
        if not imgs.is_dir():
            raise CavgaError(f"{imgs}: folder not found")
        files = _list_images(imgs)
        by_stem: dict[str, list[Path]] = {}
        for p in files:
            by_stem.setdefault(p.stem, []).append(p)
        normal = cls.name == "MT_Free"
        defect = GOOD if normal else cls.name[3:].lower()
        for stem in sorted(by_stem):
            group = by_stem[stem]
            masks = [p for p in group if p.suffix.lower() == ".png"]
            images = [p for p in group if p.suffix.lower() != ".png"]
            if not images:
                raise CavgaError(f"{masks[0]}: mask has no matching image in {imgs}")
            if len(images) > 1:
                raise CavgaError(f"{images[1]}: two images share the name {stem!r} in {imgs}")
            image = images[0]
            if normal:  # MT_Free masks are all zero; the loader gives zeros for normal images
                normals.append(Record(str(image), None, 0, GOOD))
            elif not masks:
                raise CavgaError(f"{image}: anomalous image has no mask (expected {image.with_suffix('.png')})")
            else:
                anomalous.append(Record(str(image), str(masks[0]), 1, defect))
    if not normals:
        raise CavgaError(f"{path / 'MT_Free' / 'Imgs'}: no training images")
    train, test_normal = _seeded_normals(normals, train_fraction, seed)
    test = test_normal + anomalous
    info = _info("mtd", path, train, test, category=None, seed=seed, train_fraction=train_fraction)
    return Split(train, test, info)


def folder_split(root: str | Path, train_fraction: float = 0.8, seed: int = 0) -> Split:
    """A user's folder: ``good/`` + one folder per defect type (or ``train/`` + ``test/``); masks optional."""
    path = _check_root(root)
    masks_ok = ("_mask", "")
    if (path / "train").is_dir() and (path / "test").is_dir():
        train, test = _fixed_split(path, False, MASK_FOLDERS, masks_ok)
        return Split(train, test, _info("folder", path, train, test, category=None, presplit=True))
    _check_fraction("train_fraction", train_fraction)
    good = path / GOOD
    if not good.is_dir():
        found = ", ".join(p.name for p in _subfolders(path)) or "none"
        raise CavgaError(f"{good}: folder of normal images not found (sub-folders found: {found})")
    normals = [Record(str(p), None, 0, GOOD) for p in _list_images(good)]
    if not normals:
        raise CavgaError(f"{good}: no training images")
    mask_root = next((path / m for m in MASK_FOLDERS if (path / m).is_dir()), None)
    anomalous: list[Record] = []
    used: set[Path] = set()
    defect_dirs = [p for p in _subfolders(path) if p.name != GOOD and p.name not in MASK_FOLDERS]
    for sub in defect_dirs:
        masks = _mask_index(mask_root / sub.name, masks_ok) if mask_root is not None else {}
        for p in _list_images(sub):
            m = masks.get(p.stem)
            if m is not None:
                used.add(m)
            anomalous.append(Record(str(p), str(m) if m else None, 1, sub.name))
    if mask_root is not None:
        for sub in _subfolders(mask_root):
            for m in _list_images(sub):
                if m not in used:
                    raise CavgaError(f"{m}: mask has no matching image in {path / sub.name}")
    train, test_normal = _seeded_normals(normals, train_fraction, seed)
    test = test_normal + anomalous
    info = _info("folder", path, train, test, category=None, seed=seed, train_fraction=train_fraction, presplit=False)
    return Split(train, test, info)


def load_split(cfg: DataConfig) -> Split:
    """The split for ``cfg`` (layout, root, category, seed, train_fraction)."""
    if cfg.layout not in LAYOUTS:
        raise CavgaError(f"data.layout: unknown layout {cfg.layout!r} (choose from {', '.join(LAYOUTS)})")
    if cfg.layout == "mvtec":
        split = mvtec_split(cfg.root, cfg.category)
    elif cfg.layout == "mtd":
        split = mtd_split(cfg.root, cfg.train_fraction, cfg.seed)
    else:
        split = folder_split(cfg.root, cfg.train_fraction, cfg.seed)
    split.info.setdefault("seed", cfg.seed)
    return split


# --------------------------------------------------------------------------------------------
# Protocol helpers


def move_anomalous_to_train(split: Split, fraction: float, seed: int) -> Split:
    """CAVGA-w: move a seeded ``fraction`` of the anomalous test images to train, with image labels only.

    At least one image moves (``max(1, round(fraction * n))``), and at least one anomalous image stays
    in test when there are two or more. Moved records get ``mask_path=None``.
    """
    _check_fraction("anomalous_fraction", fraction, low_open=False)
    anomalous = [i for i, r in enumerate(split.test) if r.label == 1]
    if not anomalous:
        raise CavgaError(f"{split.info.get('root', 'data')}: no anomalous images to move into training (CAVGA-w)")
    n = len(anomalous)
    k = max(1, round(fraction * n))
    if n >= 2:
        k = min(k, n - 1)
    picked = set(random.Random(seed).sample(anomalous, k))
    moved = [split.test[i] for i in sorted(picked)]
    train = split.train + [Record(r.image_path, None, 1, r.defect_type) for r in moved]
    test = [r for i, r in enumerate(split.test) if i not in picked]
    info = dict(split.info)
    info["counts"] = _counts(train, test)
    info["weak_supervision"] = {
        "anomalous_fraction": fraction,
        "seed": seed,
        "n_moved": len(moved),
        "moved": [r.image_path for r in moved],
    }
    return Split(train, test, info)


def drop_weak_anomalies_from_test(split: Split, fraction: float, seed: int) -> Split:
    """CAVGA-u's test set for the same ``fraction`` and ``seed``: without the anomalous images that
    :func:`move_anomalous_to_train` gives CAVGA-w, so both variants are tested on the same images.
    Training is unchanged; a split without anomalous test images is returned as it is."""
    if not any(r.label == 1 for r in split.test):
        return split
    weak = move_anomalous_to_train(split, fraction, seed)
    moved = weak.info["weak_supervision"]
    info = dict(split.info)
    info["counts"] = _counts(split.train, weak.test)
    info["shared_test_set"] = {
        "anomalous_fraction": fraction,
        "seed": seed,
        "n_removed": moved["n_moved"],
        "removed": moved["moved"],  # the images CAVGA-w trains on with this fraction and seed
    }
    return Split(list(split.train), weak.test, info)


def hold_out_normals(records: list[Record], fraction: float, seed: int) -> tuple[list[Record], list[Record]]:
    """Seeded split of the normal records into (kept, held_out); anomalous records stay in kept.

    ``held_out`` gets ``round(fraction * n)`` normals, at least one when ``fraction > 0`` and there are
    two or more, and never all of them. Both lists keep the input order.
    """
    _check_fraction("val_fraction", fraction, low_open=False)
    normal_idx = [i for i, r in enumerate(records) if r.label == 0]
    n = len(normal_idx)
    k = round(fraction * n)
    if fraction > 0 and n >= 2:
        k = min(max(k, 1), n - 1)
    elif n < 2:
        k = 0
    held = set(random.Random(seed).sample(normal_idx, k))
    kept = [r for i, r in enumerate(records) if i not in held]
    held_out = [r for i, r in enumerate(records) if i in held]
    return kept, held_out


# --------------------------------------------------------------------------------------------
# Loading images and masks


def _reason(e: BaseException) -> str:
    return str(e).splitlines()[0] if str(e).strip() else type(e).__name__


def _open(path: str | Path, what: str) -> Image.Image:
    """Open and fully decode a file, turning every PIL failure into a one-line CavgaError."""
    try:
        with Image.open(path) as im:
            im.load()
            return im.copy() if im.mode != "P" else im.convert("RGBA")
    except FileNotFoundError:
        raise CavgaError(f"{path}: {what} file not found") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise CavgaError(f"{path}: cannot read {what} ({_reason(e)})") from None


def image_size_of(path: str | Path) -> tuple[int, int]:
    """(height, width) of an image file, reading only its header."""
    try:
        with Image.open(path) as im:
            w, h = im.size
    except FileNotFoundError:
        raise CavgaError(f"{path}: image file not found") from None
    except (OSError, SyntaxError, ValueError) as e:
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


def _resize_image(x: torch.Tensor, image_size: int | None) -> torch.Tensor:
    if image_size is None or tuple(x.shape[1:]) == (image_size, image_size):
        return x
    y = F.interpolate(x[None], size=(image_size, image_size), mode="bilinear", align_corners=False, antialias=True)
    return y[0].clamp_(0.0, 1.0)  # (3, S, S)


def _read_image(path: str | Path, image_size: int | None) -> tuple[torch.Tensor, tuple[int, int]]:
    im = _open(path, "image")
    h, w = im.height, im.width
    x = torch.from_numpy(np.ascontiguousarray(_to_float_rgb(im).transpose(2, 0, 1)))  # (3, H, W)
    return _resize_image(x, image_size), (h, w)


def load_image(path: str | Path, image_size: int | None) -> torch.Tensor:
    """(3, S, S) float32 RGB in [0, 1]; ``image_size=None`` keeps the image's own (3, H, W).

    Grayscale, palette, RGBA (alpha dropped) and 16-bit images become 3-channel RGB; the resize is
    bilinear with antialiasing and does not keep the aspect ratio.
    """
    return _read_image(path, image_size)[0]


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


def load_mask(
    path: str | Path,
    image_size: int | None,
    expected_size: tuple[int, int] | None = None,
    image_path: str | Path | None = None,
) -> torch.Tensor:
    """(1, S, S) float32 in {0, 1} by :func:`mask_defect`'s rule, then a nearest resize.

    ``expected_size`` is the image's own (height, width); a mask of another size is an error naming
    the mask (and ``image_path`` when given).
    """
    im = _open(path, "mask")
    if expected_size is not None and (im.height, im.width) != tuple(expected_size):
        eh, ew = expected_size
        of = f"image {image_path}" if image_path is not None else "its image"
        raise CavgaError(f"{path}: mask is {im.width}x{im.height} but {of} is {ew}x{eh}")
    if im.mode == "1":
        m = np.asarray(im, dtype=bool)
    elif im.mode in _SIXTEEN_BIT:
        m = mask_defect(np.asarray(im).astype(np.int64), 65535.0, path)
    elif im.mode == "F":
        m = mask_defect(np.asarray(im).astype(np.float64), 1.0, path)
    else:
        m = mask_defect(np.asarray(im.convert("L")), 255.0, path)  # (H, W)
    t = torch.from_numpy(np.ascontiguousarray(m)).to(torch.float32)[None]  # (1, H, W)
    if image_size is not None and tuple(t.shape[1:]) != (image_size, image_size):
        t = F.interpolate(t[None], size=(image_size, image_size), mode="nearest-exact")[0]  # (1, S, S)
    return t


def verify_images(records: list[Record]) -> None:
    """Open and fully decode every record's image once: a corrupt file is an error naming it, before
    training starts (a shuffled loader with ``drop_last`` might otherwise never read it)."""
    for r in records:
        _open(r.image_path, "image")


# --------------------------------------------------------------------------------------------
# Dataset and batches


@dataclass
class Sample:
    """One loaded image."""

    image: torch.Tensor  # (3, S, S) float32 in [0, 1]
    mask: torch.Tensor | None  # (1, S, S) in {0, 1}; zeros for normal images; None: anomalous, no mask
    label: int
    defect_type: str
    path: str


@dataclass
class Batch:
    """Samples stacked; ``has_mask`` marks real ground truth (normal images always count)."""

    image: torch.Tensor  # (B, 3, S, S)
    mask: torch.Tensor  # (B, 1, S, S), zeros where the sample had no mask
    has_mask: torch.Tensor  # (B,) bool
    label: torch.Tensor  # (B,) long
    defect_type: list[str]
    path: list[str]

    def __len__(self) -> int:
        return len(self.path)

    def to(self, device: torch.device | str) -> Batch:
        """The tensors moved to ``device``."""
        return Batch(
            self.image.to(device),
            self.mask.to(device),
            self.has_mask.to(device),
            self.label.to(device),
            self.defect_type,
            self.path,
        )


def collate(samples: list[Sample]) -> Batch:
    """Stack samples into a Batch (for ``DataLoader(collate_fn=collate)``)."""
    if not samples:
        raise ValueError("collate: empty list of samples")
    image = torch.stack([s.image for s in samples])  # (B, 3, S, S)
    zeros = torch.zeros((1, *image.shape[2:]), dtype=torch.float32)  # (1, S, S)
    mask = torch.stack([s.mask if s.mask is not None else zeros for s in samples])  # (B, 1, S, S)
    has_mask = torch.tensor([s.mask is not None for s in samples], dtype=torch.bool)  # (B,)
    label = torch.tensor([s.label for s in samples], dtype=torch.long)  # (B,)
    return Batch(image, mask, has_mask, label, [s.defect_type for s in samples], [s.path for s in samples])


class ImageDataset(torch.utils.data.Dataset):
    """Records loaded as Samples at ``image_size`` x ``image_size``.

    With ``cache`` each sample is decoded and resized once and kept (in the process that loads it:
    use it with ``num_workers=0`` or persistent workers); at 128 px that is 0.2 MB an image."""

    def __init__(self, records: list[Record], image_size: int, cache: bool = False):
        if image_size < 1:
            raise CavgaError(f"data.image_size: {image_size} must be >= 1")
        self.records = list(records)
        self.image_size = int(image_size)
        self._cache: dict[int, Sample] | None = {} if cache else None

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> Sample:
        if self._cache is not None:
            if i not in self._cache:
                self._cache[i] = self._load(i)
            return self._cache[i]
        return self._load(i)

    def _load(self, i: int) -> Sample:
        r = self.records[i]
        image, (h, w) = _read_image(r.image_path, self.image_size)  # (3, S, S)
        if r.label == 0:
            mask = torch.zeros((1, self.image_size, self.image_size), dtype=torch.float32)  # (1, S, S)
        elif r.mask_path is None:
            mask = None
        else:
            mask = load_mask(r.mask_path, self.image_size, (h, w), r.image_path)  # (1, S, S)
        return Sample(image, mask, r.label, r.defect_type, r.image_path)


def make_loader(
    records: list[Record] | ImageDataset,
    image_size: int,
    batch_size: int,
    shuffle: bool,
    num_workers: int = 0,
    seed: int = 0,
) -> torch.utils.data.DataLoader:
    """Batches of ``records`` (or of a ready ImageDataset, e.g. a cached one); shuffled training
    batches drop the last incomplete one and are ordered by ``seed`` alone, so an epoch replays
    identically after a resume."""
    dataset = records if isinstance(records, ImageDataset) else ImageDataset(records, image_size)
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        drop_last=shuffle and len(dataset) > batch_size,
        num_workers=num_workers,
        collate_fn=collate,
        generator=torch.Generator().manual_seed(seed),
    )
