"""The painted-defect check that ``cavga train`` ends with (:func:`cavga.validation.validate_run` on
the finished run), and what it tells the user: one summary line, and warnings where the map, the
verdict or the held-out set behind them is not to be trusted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .painting import held_out_normals
from .validation import no_held_out_reason, validate_run

# Below this validation AUROC `cavga train` warns. Chosen from the stored runs measured both ways
# (benchmarks/validation_vs_test.py; docs/method.md, "How far painted defects predict real ones"):
# the 18 CAVGA runs whose map scored under 0.7 here reached test pixel AUROC 0.25-0.78 (median 0.59).
WEAK_AUROC = 0.7
FEW_HELD_OUT = 10  # fewer held-out normals than this: the check's numbers swing with a single image


def painted_check(run_dir: str | Path, device: str = "auto") -> dict[str, Any] | None:
    """What ``cavga train`` ends with: :func:`validate_run` on a trained run (writing
    validation.json), or None when the run held out no normal images to paint on."""
    return validate_run(run_dir, device) if held_out_normals(run_dir) else None


def check_summary(result: dict[str, Any]) -> str:
    """One line of :func:`validate_run`'s ``result``: what a user learns about the trained run
    without a single real anomaly."""
    m = result["metrics"]
    line = (
        f"painted-defect check ({result['protocol']}; no test image): pixel AUROC {m['pixel_auroc']:.3f}, "
        f"image AUROC {m['image_auroc']:.3f}, IoU {m['iou']:.3f}"
    )
    if result.get("baseline_residual"):
        line += f" (the reconstruction residual's pixel AUROC: {result['baseline_residual']['pixel_auroc']:.3f})"
    return line


def check_warnings(result: dict[str, Any]) -> list[str]:
    """Plain warnings where :func:`validate_run`'s ``result`` says the map or the verdict is not to
    be trusted: an AUROC under ``WEAK_AUROC`` on painted defects (0.5 is chance), or fewer than
    ``FEW_HELD_OUT`` held-out normals behind the numbers."""
    m, out = result["metrics"], []
    if m["pixel_auroc"] < WEAK_AUROC:
        out.append(
            f"{result['run']}: the anomaly map barely finds painted defects on held-out normals (pixel AUROC "
            f"{m['pixel_auroc']:.3f} < {WEAK_AUROC}; 0.5 is chance), so its heatmaps and masks are unlikely to "
            "outline real defects; in this project's measurements pretrained features localised best (CAVGA-R with "
            "a frozen pretrained encoder: README, 'CAVGA-R's encoder'; the PatchCore-like reference: docs/baselines.md)"
        )
    if m["image_auroc"] < WEAK_AUROC:
        out.append(
            f"{result['run']}: the image score barely separates painted-defect images from clean ones (image "
            f"AUROC {m['image_auroc']:.3f} < {WEAK_AUROC}), so its verdicts are unlikely to be reliable"
        )
    n = result.get("n_held_out")
    if n is not None and n < FEW_HELD_OUT:
        out.append(
            f"{result['run']}: the painted-defect check and the verdict threshold rest on only {n} held-out normal "
            f"images; with more images (or a larger data.val_fraction) both would be steadier"
        )
    return out


def skipped_check(run_dir: str | Path) -> tuple[str, list[str]]:
    """What ``cavga train`` says where :func:`painted_check` found no held-out normal image: the line
    saying why, and (as :func:`check_warnings`) the warning that the verdict threshold and the map
    statistics were fitted on training images instead (cavga.decisions.finish_decisions)."""
    line = f"painted-defect check skipped: the run held out no normal images: {no_held_out_reason(run_dir)}"
    warning = (
        f"{run_dir}: the verdict threshold and the map statistics were fitted on training images, which the model "
        "has seen, as no normal image was held out; unseen normal images may be flagged anomalous more often than "
        "infer.normalizer_quantile intends"
    )
    return line, [warning]
