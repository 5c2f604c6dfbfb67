"""The minimum defect area (``infer.mask_min_area``): MVTec AD's threshold rule on normal images alone.

MVTec AD (Bergmann et al., CVPR 2019, Sec. 4.3; the paper's [5], whose metrics CAVGA follows) sets
each method's mask threshold without any anomalous image: a user states a minimum defect area, a
connected region of the thresholded map must be at least that large to count as a defect, and the
threshold is raised over the anomaly-free validation images "until the area of the largest anomalous
region on the validation set is just below" that area.  Inspection specifications are written the
same way ("flag defects of at least N mm^2"), so the area is a number a user can state.

Here the area is a share of the image's content (``min_area`` in (0, 1)), so that it means the same
at the model's size and at the image's own; regions are 8-connected, as the ground truth's in AUPRO.
"""

from __future__ import annotations

import bisect

import numpy as np
import torch
from scipy import ndimage
from torch import Tensor

from .metrics import EIGHT_CONNECTED


def region_areas(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One mask's (H, W) 8-connected regions: the label image (H, W) and each region's pixel count (R,)."""
    labels, n = ndimage.label(mask, structure=EIGHT_CONNECTED)
    return labels, np.bincount(labels.ravel(), minlength=n + 1)[1:]


def drop_small_regions(mask: Tensor | np.ndarray, min_area: float, valid: Tensor | None = None):
    """``mask`` without its regions smaller than ``min_area`` of the content: one mask (H, W) (an array,
    all content) or masks (B, S, S) (a Tensor; ``valid`` (B, 1, S, S) marks each image's content)."""
    if min_area <= 0:
        return mask
    if isinstance(mask, np.ndarray):
        return _kept_regions(mask, min_area, mask.size)  # (H, W)
    content = [mask[0].numel()] * len(mask) if valid is None else valid.flatten(1).sum(dim=1).tolist()
    kept = [_kept_regions(m, min_area, n) for m, n in zip(mask.cpu().numpy(), content, strict=True)]
    return torch.from_numpy(np.stack(kept)).to(mask.device)  # (B, S, S)


def _kept_regions(mask: np.ndarray, min_area: float, content: int) -> np.ndarray:
    """``mask`` (H, W) with only its regions covering at least ``min_area`` of ``content`` pixels: the
    share compared as ``largest_region_share`` computes it, so a region of exactly the minimum area is a
    defect both here and to the area rule (``min_area * content`` can round above a whole number)."""
    labels, areas = region_areas(mask)
    return np.concatenate([[False], areas / content >= min_area])[labels]  # label 0 is the background


def largest_region_share(mask: np.ndarray) -> float:
    """The share of a mask's (H, W) pixels its largest 8-connected region covers (0 when empty)."""
    areas = region_areas(mask)[1]
    return float(areas.max()) / mask.size if len(areas) else 0.0


def area_rule_threshold(maps: list[np.ndarray], min_area: float) -> float:
    """MVTec AD's threshold: the lowest map value t at which no normal map of ``maps`` (each (h, w), its
    content) holds a region of ``map >= t`` covering ``min_area`` of it or more. The largest region
    only shrinks as t rises, so t is found by bisection over the maps' pixel values."""
    if not maps or not 0.0 < min_area < 1.0:
        raise ValueError(f"the area rule needs normal maps and a minimum area in (0, 1), not {min_area}")
    values = np.unique(np.concatenate([m.ravel() for m in maps]))  # sorted

    def passes(t: float) -> bool:
        return all(largest_region_share(m >= t) < min_area for m in maps)

    lo = bisect.bisect_left(values, True, key=passes)  # the first value that passes (False sorts first)
    # len(values): no pixel value passes; just above every pixel, an empty mask, does
    return float(values[lo]) if lo < len(values) else float(np.nextafter(values[-1], np.inf))
