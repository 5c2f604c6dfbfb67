"""The three layouts (``mvtec``, ``mtd``, ``folder``) listed into a :class:`Split`, and
:func:`load_split`, which picks one from the data config (or a one-class layout, :mod:`.oneclass`)."""

from __future__ import annotations

import random
import warnings
from pathlib import Path

from ..config import LAYOUTS, DataConfig
from ..errors import CavgaError
from .listing import (
    _check_root,
    _check_unused_masks,
    _fixed_split,
    _is_image,
    _list_images,
    _mask_index,
    _subfolders,
    _warn_loose_images,
)
from .oneclass import ONE_CLASS_LAYOUTS, one_class_split
from .records import GOOD, MASK_FOLDERS, Record, Split, _check_fraction, _info


def mvtec_split(root: str | Path, category: str | None) -> Split:
    """MVTec AD's own split of one category; ``root`` holds categories or is a category folder."""
    path = _check_root(root, "ROOT/<category>/train/good/*.png, ROOT/<category>/test/<type>/*.png and masks")
    if (path / "train").is_dir() and (path / "test").is_dir():
        base = path
        if category not in (None, path.name):  # a category folder given as the root: it names itself
            raise CavgaError(f"{path}: is the category folder {path.name!r}, not {category!r}; drop --category")
        category = path.name
    else:
        found = [p.name for p in _subfolders(path) if (p / "train").is_dir()]
        if category is None:
            listing = ", ".join(found) or "none"
            hint = "" if found else "; not an MVTec AD tree: for your own images use --layout folder (docs/data.md)"
            raise CavgaError(f"{path}: data.category is required (categories found: {listing}){hint}")
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
    path = _check_root(root, "ROOT/MT_Free/Imgs/*.jpg and ROOT/MT_<defect>/Imgs/*.jpg with *.png masks")
    _check_fraction("train_fraction", train_fraction)
    classes = [p for p in _subfolders(path) if p.name.startswith("MT_")]
    if not classes:
        raise CavgaError(f"{path}: no MT_<class> folders (is this the Magnetic Tile Defect data set?)")
    if not any(c.name == "MT_Free" for c in classes):
        raise CavgaError(f"{path / 'MT_Free'}: folder not found (no defect-free training images)")
    _warn_loose_images(path, f"images go in {path}/MT_Free/Imgs/ (normal) or {path}/MT_<defect>/Imgs/")
    normals: list[Record] = []
    anomalous: list[Record] = []
    for cls in classes:
        imgs = cls / "Imgs"
        if not imgs.is_dir():
            raise CavgaError(f"{imgs}: folder not found")
        _warn_loose_images(cls, f"images and their masks go in {imgs}/")
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
    """A user's folder: ``good/`` + one folder per defect type (or ``train/`` + ``test/``); masks optional.
    A folder holding images and no sub-folder is taken as ``good/`` alone: every image normal."""
    path = _check_root(root, "ROOT/good/*.png and, optionally, ROOT/<defect>/*.png")
    masks_ok = ("_mask", "")
    if (path / "train").is_dir() and (path / "test").is_dir():
        train, test = _fixed_split(path, False, MASK_FOLDERS, masks_ok)
        return Split(train, test, _info("folder", path, train, test, category=None, presplit=True))
    _check_fraction("train_fraction", train_fraction)
    good = path / GOOD
    if not good.is_dir() and not _subfolders(path) and any(_is_image(p) for p in path.iterdir()):
        good = path  # a plain folder of images, all of them normal: what most users hand over first
    elif not good.is_dir():
        found = ", ".join(p.name for p in _subfolders(path)) or "none"
        raise CavgaError(
            f"{good}: folder of normal images not found (sub-folders found: {found}); put the normal images in "
            f"{good}/ and each kind of defect in a folder beside it, or pass a folder that holds only normal images"
        )
    normals = [Record(str(p), None, 0, GOOD) for p in _list_images(good)]
    if not normals:
        raise CavgaError(f"{good}: no training images")
    if good != path:
        _warn_loose_images(path, f"normal images go in {good}/, anomalous ones in {path}/<defect type>/")
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
        _check_unused_masks(mask_root, used, path)
    train, test_normal = _seeded_normals(normals, train_fraction, seed)
    test = test_normal + anomalous
    info = _info("folder", path, train, test, category=None, seed=seed, train_fraction=train_fraction, presplit=False)
    return Split(train, test, info)


def load_split(cfg: DataConfig) -> Split:
    """The split for ``cfg`` (layout, root, category, seed, train_fraction)."""
    if cfg.layout not in LAYOUTS:
        raise CavgaError(f"data.layout: unknown layout {cfg.layout!r} (choose from {', '.join(LAYOUTS)})")
    if cfg.layout in ONE_CLASS_LAYOUTS:
        if cfg.layout == "digits" and cfg.root not in (None, ""):  # set by the user (the default is None): said
            warnings.warn(
                f"data.root {cfg.root!r}: the digits layout reads scikit-learn's digits, which ship with it; ignored",
                stacklevel=2,
            )
        split = one_class_split(cfg.layout, cfg.root, cfg.category, cfg.train_fraction, cfg.seed)
    elif cfg.layout == "mvtec":
        split = mvtec_split(cfg.root, cfg.category)
    else:
        if cfg.category is not None:  # a leftover of an MVTec command, most likely: said, not silently dropped
            warnings.warn(
                f"data.category {cfg.category!r}: the {cfg.layout} layout has no categories; ignored", stacklevel=2
            )
        split = (mtd_split if cfg.layout == "mtd" else folder_split)(cfg.root, cfg.train_fraction, cfg.seed)
    split.info.setdefault("seed", cfg.seed)
    return split
