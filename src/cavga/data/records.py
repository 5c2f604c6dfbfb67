"""Records and splits: one image on disk before loading, train/test lists of them, and the constants
the layouts share (MVTec AD's categories, image extensions, mask folders, the normal class name)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

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
        """A record read back from a split.json, its defect type checked to be a plain name: outputs
        such as evaluate's overlays are named after it, and a path there would write elsewhere."""
        defect = str(d["defect_type"])
        if not defect or defect in (".", "..") or any(c in defect for c in "/\\\0"):
            raise ValueError(f"defect type {defect!r} is not a plain folder name")
        return Record(str(d["image_path"]), d.get("mask_path"), int(d["label"]), defect)


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


def _check_fraction(name: str, value: float, low_open: bool = True) -> float:
    ok = (0.0 < value <= 1.0) if low_open else (0.0 <= value <= 1.0)
    if not ok:
        raise CavgaError(f"{name}: {value} is outside {'(0, 1]' if low_open else '[0, 1]'}")
    return float(value)
