"""The report's figures, drawn with matplotlib and written as SVG files (crisp on screen and in print)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ..io_utils import atomic_write_text  # noqa: E402

NORMAL, ANOMALOUS, HELD_OUT, THRESHOLD = "#1f77b4", "#d62728", "#7f7f7f", "#000000"


SVG_SALT = "cavga"  # matplotlib's svg.hashsalt: the same figure gets the same element ids each time


def _save(fig, path: str | Path) -> Path:
    buf = io.StringIO()
    with matplotlib.rc_context({"svg.hashsalt": SVG_SALT}):  # with no date: byte-reproducible files
        fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(fig)
    return atomic_write_text(path, buf.getvalue())


def score_histogram(
    normal: Sequence[float],
    anomalous: Sequence[float],
    held_out: Sequence[float],
    threshold: float | None,
    xlabel: str,
):
    """A figure: histograms of the test images' scores (normal, anomalous) and of the held-out normal
    scores (outline), with the verdict ``threshold`` as a vertical line (gid "threshold")."""
    fig, ax = plt.subplots(figsize=(6.4, 3.2))
    pooled = np.concatenate([np.asarray(v, dtype=float) for v in (normal, anomalous, held_out) if len(v)])
    bins = np.histogram_bin_edges(pooled, bins=min(40, max(10, pooled.size // 3))) if pooled.size else 10
    if len(normal):
        ax.hist(normal, bins=bins, alpha=0.55, color=NORMAL, label=f"test normal ({len(normal)})")
    if len(anomalous):
        ax.hist(anomalous, bins=bins, alpha=0.55, color=ANOMALOUS, label=f"test anomalous ({len(anomalous)})")
    if len(held_out):
        ax.hist(
            held_out, bins=bins, histtype="step", lw=1.5, color=HELD_OUT, label=f"held-out normal ({len(held_out)})"
        )
    if threshold is not None:
        ax.axvline(threshold, color=THRESHOLD, ls="--", lw=1.5, label=f"threshold {threshold:.4g}", gid="threshold")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("images")
    ax.legend(fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside the bars
    return fig


def roc_figure(fpr: Sequence[float], tpr: Sequence[float], auroc: float | None):
    """The image ROC curve with the chance diagonal."""
    fig, ax = plt.subplots(figsize=(3.6, 3.4))
    ax.plot([0, 1], [0, 1], color="#bbbbbb", lw=1, ls=":")
    label = f"AUROC {auroc:.3f}" if auroc is not None else None
    ax.plot(fpr, tpr, color=ANOMALOUS, lw=1.8, label=label)
    ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="false positive rate (images)", ylabel="true positive rate")
    if label:
        ax.legend(loc="lower right", fontsize=8, frameon=False)
    return fig


def pro_figure(fpr: Sequence[float], pro: Sequence[float], fpr_limit: float, aupro: float | None):
    """The per-region-overlap curve up to ``fpr_limit``."""
    fig, ax = plt.subplots(figsize=(3.6, 3.4))
    label = f"AUPRO@{fpr_limit:g} {aupro:.3f}" if aupro is not None else None
    ax.plot(fpr, pro, color=NORMAL, lw=1.8, label=label)
    ax.set(xlim=(0, fpr_limit), ylim=(0, 1.02), xlabel="false positive rate (pixels)", ylabel="per-region overlap")
    if label:
        ax.legend(loc="lower right", fontsize=8, frameon=False)
    return fig


def write_svg(fig, path: str | Path) -> Path:
    """Write a figure as SVG (atomically) and close it."""
    return _save(fig, path)
