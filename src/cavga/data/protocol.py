"""Protocol helpers on a split: CAVGA-w's weakly supervised training images, CAVGA-u's matching
test set, and the normal images held out for validation."""

from __future__ import annotations

import math
import random

from ..errors import CavgaError
from .records import Record, Split, _check_fraction, _counts


def move_anomalous_to_train(split: Split, fraction: float, seed: int) -> Split:
    """CAVGA-w: move a seeded ``fraction`` of the anomalous test images to train, with image labels only.

    ``ceil(fraction * n)`` images move, and at least one anomalous image stays in test when there are
    two or more. Moved records get ``mask_path=None``. Why the ceiling: the paper's Table 2 trains
    MVTec AD's CAVGA-w on 35 anomalous images of 1258 (2.8%, 2.3 per category), so its "2%" is not
    rounded down; on bottle (63 anomalous images) ``round`` gives 1 image against the 1.75 of
    Table 2's share, the ceiling 2. mSTC's row (1763 of 88167, 2.0%) cannot tell the two apart.
    """
    _check_fraction("anomalous_fraction", fraction, low_open=False)
    anomalous = [i for i, r in enumerate(split.test) if r.label == 1]
    if not anomalous:
        raise CavgaError(f"{split.info.get('root', 'data')}: no anomalous images to move into training (CAVGA-w)")
    n = len(anomalous)
    k = max(1, math.ceil(round(fraction * n, 9)))  # round(., 9): no float error pushes an exact product up (0.07 * 100)
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


def why_none_held_out(n_normal: int, val_fraction: float) -> str:
    """Why ``n_normal`` normal training images at ``val_fraction`` leave no held-out normal image
    (:func:`hold_out_normals`: none at 0, none from fewer than 2), and what to do."""
    if val_fraction <= 0:
        return "data.val_fraction is 0; set it above 0 (e.g. --set data.val_fraction=0.1) to hold some out"
    if n_normal >= 2:  # hold_out_normals holds out at least one here: a split.json made otherwise
        return f"its split.json lists none, though {n_normal} training normals at val_fraction {val_fraction:g} would"
    images = f"{n_normal} normal training image{'' if n_normal == 1 else 's'}"
    return (
        f"{images} at data.val_fraction {val_fraction:g} leave{'s' if n_normal == 1 else ''} none held out "
        "(holding one out needs at least 2); add normal training images"
    )
