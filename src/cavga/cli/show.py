"""What the `cavga` command prints: result tables, the painted check's summary, `validate`'s findings."""

from __future__ import annotations

import warnings
from pathlib import Path


def painted_check(run_dir: Path, device: str) -> None:
    """After training: `cavga validate` on the run's held-out normals, then :func:`say_check`."""
    from ..check import painted_check as check

    say_check(run_dir, check(run_dir, device))


def say_check(run_dir: Path, result: dict | None) -> None:
    """The painted-defect check's summary line, and a warning where the map or the verdict barely
    finds painted defects; where the run held out no normal image, why, and a warning that its
    thresholds were fitted on training images."""
    from ..check import check_summary, check_warnings, skipped_check
    from ..validation import VALIDATION_FILE

    if result is None:
        line, messages = skipped_check(run_dir)
        print(line)
        for message in messages:
            warnings.warn(message, stacklevel=1)
        return
    print(f"{check_summary(result)}; written: {run_dir / VALIDATION_FILE}")
    for message in check_warnings(result):
        warnings.warn(message, stacklevel=1)


def print_result(result: dict) -> None:
    """One run's metrics table, and what the test set left undefined."""
    from ..evaluate import format_table, normal_only_test_note

    print(format_table([result]))
    undefined = result["metrics"].get("undefined")
    normal_only = normal_only_test_note(result)
    if normal_only:  # no anomalous test image: say so, and the false-alarm rate, which is defined
        print(normal_only)
    elif result.get("pixel_ground_truth") is False:
        print("no pixel masks in this test set: pixel metrics absent (image AUROC and detection accuracy only)")
    elif undefined:
        print(f"undefined on this test set: {', '.join(undefined)}")


def print_validation(result: dict, run_dir: Path) -> None:
    """`cavga validate`'s findings: the table, the map read, image AUROC by score, the mask sweep."""
    from ..mask_threshold import mask_label, mask_sweep_text
    from ..validation import VALIDATION_FILE

    print_result(result)
    read = ", averaged over half-cell shifts" if result["shifted_map"] is True else ""  # infer.shifted_map
    if result.get("enlarged_map") is True:  # infer.enlarged_map
        read = ", averaged with the image enlarged twofold" + read
    if result.get("map_blur"):  # infer.map_blur
        read += f", blurred by a Gaussian of {result['map_blur']:g} px"
    if result["attention_direction"]:
        shown = {"inverse": "1 - A", "direct": "A", "two_sided": "|A - A's normal level|"}
        print(f"anomaly map: {shown[result['attention_direction']]}{read}")
    if result["weak_map"]:
        print(f"anomaly map: {'1 - A_cn' if result['weak_map'] == 'normal' else 'A_ca'}{read}")
    scores = result["image_auroc_by_score"]
    print("image AUROC by infer.image_score: " + ", ".join(f"{k}: {v}" for k, v in scores.items() if v is not None))
    if result["mask_quantile_iou"]:
        # "1.0+0.05": margin 0.05; "0.9@0.5": peak fraction 0.5
        in_use = mask_label(result["mask_quantile"], result["mask_margin"], result["mask_peak_fraction"])
        if result["mask_quantile"] is None:  # infer.mask_quantile null: the fixed infer.mask_threshold, in no row
            fixed = mask_label(result["mask_threshold"], 0.0, result["mask_peak_fraction"])
            in_use = f"no quantile: the fixed threshold {fixed}"
        faded = f"; defects faded to U({result['mask_fade']:g}, 1)" if result["mask_fade"] < 1 else ""
        if result["mask_min_area"]:  # the sweep is of unfiltered masks; the metrics above are filtered
            area = result["mask_min_area"]
            in_use = f"{result['mask_quantile']:.6g}, regions under {area:g} of the image dropped"
        print(f"IoU by infer.mask_quantile[+mask_margin][@mask_peak_fraction] (in use: {in_use}{faded}): "
              f"{mask_sweep_text(result['mask_quantile_iou'])}")  # fmt: skip
    if result["baseline_residual"]:  # the residual's mask level (cavga.mask_threshold.decide_residual_mask)
        t, r = result["residual_mask"]
        print(f"the reconstruction residual's mask: {t:.3g} of its held-out peak, raised {r:g} to each map's peak")
    print(f"protocol: {result['protocol']}; written: {run_dir / VALIDATION_FILE}")
