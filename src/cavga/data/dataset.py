"""Records as a torch Dataset of typed Samples, and Batches of them from a DataLoader (``make_loader``)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..errors import CavgaError
from .geometry import check_resize, content_box, valid_mask
from .images import load_mask, read_image
from .records import Record


@dataclass
class Sample:
    """One loaded image."""

    image: torch.Tensor  # (3, S, S) float32 in [0, 1]
    mask: torch.Tensor | None  # (1, S, S) in {0, 1}; zeros for normal images; None: anomalous, no mask
    label: int
    defect_type: str
    path: str
    valid: torch.Tensor | None = None  # (1, S, S): 1 on content, 0 on padding (resize pad/center); None: all


@dataclass
class Batch:
    """Samples stacked; ``has_mask`` marks real ground truth (normal images always count)."""

    image: torch.Tensor  # (B, 3, S, S)
    mask: torch.Tensor  # (B, 1, S, S), zeros where the sample had no mask
    has_mask: torch.Tensor  # (B,) bool
    label: torch.Tensor  # (B,) long
    defect_type: list[str]
    path: list[str]
    valid: torch.Tensor | None = None  # (B, 1, S, S) 1 on content, 0 on padding; None: no padding anywhere

    def __len__(self) -> int:
        return len(self.path)

    def pin_memory(self) -> Batch:
        """The tensors in page-locked memory (DataLoader's ``pin_memory`` calls this)."""
        return Batch(
            self.image.pin_memory(),
            self.mask.pin_memory(),
            self.has_mask.pin_memory(),
            self.label.pin_memory(),
            self.defect_type,
            self.path,
            None if self.valid is None else self.valid.pin_memory(),
        )

    def to(self, device: torch.device | str) -> Batch:
        """The tensors moved to ``device``."""
        return Batch(
            self.image.to(device),
            self.mask.to(device),
            self.has_mask.to(device),
            self.label.to(device),
            self.defect_type,
            self.path,
            None if self.valid is None else self.valid.to(device),
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
    valid = None
    if any(s.valid is not None for s in samples):
        ones = torch.ones_like(zeros)
        valid = torch.stack([s.valid if s.valid is not None else ones for s in samples])  # (B, 1, S, S)
    return Batch(image, mask, has_mask, label, [s.defect_type for s in samples], [s.path for s in samples], valid)


class ImageDataset(torch.utils.data.Dataset):
    """Records loaded as Samples at ``image_size`` x ``image_size``, placed by ``resize``
    (:mod:`cavga.data.geometry`; with ``pad`` each Sample carries its ``valid`` map).

    With ``cache`` each sample is decoded and resized once and kept (in the process that loads it:
    use it with ``num_workers=0`` or persistent workers); at 128 px that is 0.26 MB an image (image
    and mask, float32). ``cache_limit_mb`` bounds the cache: past it, further samples are loaded
    from disk each time instead of being kept."""

    def __init__(
        self,
        records: list[Record],
        image_size: int,
        cache: bool = False,
        cache_limit_mb: float | None = None,
        resize: str = "stretch",
    ):
        if image_size < 1:
            raise CavgaError(f"data.image_size: {image_size} must be >= 1")
        self.records = list(records)
        self.image_size = int(image_size)
        self.resize = check_resize(resize)
        self._cache: dict[int, Sample] | None = {} if cache else None
        channels = 5 if resize != "stretch" else 4  # image, mask (and the valid map), float32
        per_sample = 4 * channels * self.image_size**2  # bytes
        limit = math.inf if cache_limit_mb is None else cache_limit_mb * 2**20
        self._cache_capacity = int(min(len(self.records), limit // per_sample))

    @property
    def cached(self) -> int:
        """How many samples are held in memory now."""
        return len(self._cache) if self._cache is not None else 0

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> Sample:
        if self._cache is not None:
            if i in self._cache:
                return self._cache[i]
            sample = self._load(i)
            if len(self._cache) < self._cache_capacity:
                self._cache[i] = sample
            return sample
        return self._load(i)

    def _load(self, i: int) -> Sample:
        r = self.records[i]
        s = self.image_size
        image, (h, w) = read_image(r.image_path, s, self.resize)  # (3, S, S)
        if r.label == 0:
            mask = torch.zeros((1, s, s), dtype=torch.float32)  # (1, S, S)
        elif r.mask_path is None:
            mask = None
        else:
            mask = load_mask(r.mask_path, s, (h, w), r.image_path, self.resize)  # (1, S, S)
        valid = None if content_box((h, w), s, self.resize) == (0, 0, s, s) else valid_mask((h, w), s, self.resize)
        return Sample(image, mask, r.label, r.defect_type, r.image_path, valid)


def make_loader(
    records: list[Record] | ImageDataset,
    image_size: int,
    batch_size: int,
    shuffle: bool,
    num_workers: int = 0,
    seed: int = 0,
    pin_memory: bool = False,
    resize: str = "stretch",
) -> torch.utils.data.DataLoader:
    """Batches of ``records`` (or of a ready ImageDataset, e.g. a cached one); shuffled training
    batches drop the last incomplete one and are ordered by ``seed`` alone, so an epoch replays
    identically after a resume."""
    dataset = records if isinstance(records, ImageDataset) else ImageDataset(records, image_size, resize=resize)
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        drop_last=shuffle and len(dataset) > batch_size,
        num_workers=num_workers,
        collate_fn=collate,
        pin_memory=pin_memory,  # pinned host batches: asynchronous copies to a CUDA device
        generator=torch.Generator().manual_seed(seed),
    )
