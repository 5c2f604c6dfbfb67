"""Listing folders, shared by the layouts: image files, sub-folders, masks matched to images by
name, and the fixed ``train/good`` + ``test/<type>`` tree. Listing never opens an image."""

from __future__ import annotations

import warnings
from pathlib import Path

from ..errors import CavgaError
from .records import GOOD, IMAGE_EXTENSIONS, Record

BROKEN_LINK = "broken symbolic link (its target does not exist)"


def _is_image(p: Path) -> bool:
    return p.suffix.lower() in IMAGE_EXTENSIONS


def is_hidden(name: str) -> bool:
    """A file or folder name that is no image and no folder of images (``.DS_Store``, ``.cache``, macOS's
    ``._name.png`` copies of a file's attributes): every listing of images leaves it out."""
    return name.startswith(".")


def _list_images(folder: Path) -> list[Path]:
    """Image files in ``folder``, sorted by name; hidden files (``.DS_Store``, macOS's ``._name.png``
    copies of a file's attributes, which are no images) are left out, anything else is skipped
    with a warning."""
    out = []
    for p in sorted(folder.iterdir(), key=lambda q: q.name):
        if is_hidden(p.name):
            continue
        if p.is_file() and _is_image(p):
            out.append(p)
        elif p.is_file():
            warnings.warn(f"{p}: not an image file (by its extension); skipped", stacklevel=3)
        elif p.is_symlink() and not p.exists():
            warnings.warn(f"{p}: {BROKEN_LINK}; skipped", stacklevel=3)
        elif p.is_dir():
            warnings.warn(f"{p}: unexpected folder among images; skipped", stacklevel=3)
        else:
            warnings.warn(f"{p}: not a regular file; skipped", stacklevel=3)
    return out


def _subfolders(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.is_dir() and not is_hidden(p.name)), key=lambda p: p.name)


def _warn_loose_images(folder: Path, where: str, stacklevel: int = 3) -> None:
    """One warning for the image files lying directly in ``folder``, where only its sub-folders are read:
    how many, one or two names, and ``where`` images go. Other files there (a README) pass unsaid."""
    loose = [p.name for p in sorted(folder.iterdir()) if not is_hidden(p.name) and p.is_file() and _is_image(p)]
    if loose:
        n = len(loose)
        files = f"{n} image file{'' if n == 1 else 's'}"
        names = ", ".join(loose[:2]) + (", ..." if n > 2 else "")
        message = f"{folder}: left out {files} lying directly in this folder ({names}); {where}"
        warnings.warn(message, stacklevel=stacklevel)


def _check_unused_masks(mask_root: Path, used: set[Path], image_dir: Path) -> None:
    """Every mask in ``mask_root``'s defect folders must be ``used`` (matched to an image in
    ``image_dir/<defect type>``): one that is not is a CavgaError. A ``good`` folder of masks is not
    read (a normal image's ground truth is empty), and masks lying directly in ``mask_root`` are
    left out: each said in one warning, not an error."""
    good = mask_root / GOOD
    if good.is_dir():
        warnings.warn(
            f"{good}: masks of normal images are not used (a normal image's ground truth is empty); folder skipped",
            stacklevel=3,
        )
    _warn_loose_images(mask_root, f"masks go in {mask_root}/<defect type>/", stacklevel=4)
    for sub in _subfolders(mask_root):
        if sub.name == GOOD:
            continue
        for m in _list_images(sub):
            if m not in used:
                raise CavgaError(f"{m}: mask has no matching image in {image_dir / sub.name}")


def _check_root(root: str | Path | None, expected: str = "") -> Path:
    """The data set's folder, resolved; ``expected``: the layout's tree, said when it is missing."""
    if root is None:
        raise CavgaError("data.root is not set: point it at a data set folder (or use the demo data)")
    path = Path(root).expanduser()
    if not path.exists():
        where = f"; the layout expects {expected} (docs/data.md)" if expected else ""
        tried = "" if path.is_absolute() else f" (looked for {path.absolute()})"
        raise CavgaError(f"{path}: data folder not found{tried}{where}")
    if not path.is_dir():
        raise CavgaError(f"{path}: not a folder")
    return path.resolve()


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
    _warn_loose_images(base, f"images go in {train_good}/ and {test_dir}/<{GOOD} or defect type>/")
    _warn_loose_images(base / "train", f"training images go in {train_good}/")
    _warn_loose_images(test_dir, f"test images go in {test_dir}/{GOOD}/ or {test_dir}/<defect type>/")
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
        _check_unused_masks(mask_root, used, test_dir)
    return train, test
