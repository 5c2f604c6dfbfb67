"""The speed benchmark's result as markdown tables and a JSON file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..io_utils import atomic_write_json, atomic_write_text
from .flops import PARTS


def _mem(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.0f}"


def _ms(v: float) -> str:
    """Three significant digits: 161 ms on a CPU, 1.55 ms on a GPU."""
    return f"{v:.3g}"


def _fraction(m: dict[str, Any], tf32: bool | None = None) -> str:
    """The fraction and the peak (GFLOP/s) it is of, as "77% of 103 (fp32)" ("fp32 TF32": CUDA's
    fp32 probed with TF32 on, as cuDNN's convolutions run)."""
    peak = m.get("peak_gflop_s")
    dtype = m["peak_dtype"] + (" TF32" if tf32 and m["peak_dtype"] == "fp32" else "")
    return f"{100 * m['fraction_of_peak']:.0f}%" + ("" if peak is None else f" of {peak:.0f}") + f" ({dtype})"


def _rise(m: dict[str, Any]) -> str:
    return _mem(m.get("peak_memory_rise_mb"))


FROZEN = (
    " Encoders frozen, with mu_energy (`--frozen`: the defaults' set-up, with random weights standing in"
    " for the pretrained ones: the same arithmetic)."
)


def format_report(result: dict[str, Any]) -> str:
    """Markdown: per device, the peak, the grid (training, inference), FLOPs by part, the sweeps."""
    env = result["environment"]
    lines = [
        f"torch {env['torch']}, {env['processor']}, {env['threads']} threads, load average {env['load_average_1min']}",
    ]
    if result.get("skipped_devices"):
        lines.append(f"Skipped (not available here): {', '.join(result['skipped_devices'])}.")
    if result.get("error"):
        lines.append(f"**Stopped by an error; the rows before it are kept**: {result['error']}")
    for name, dev in result["devices"].items():
        tf32 = dev.get("fp32_peak_tf32")
        peak = ", ".join(f"{k} {v} GFLOP/s" for k, v in dev["peak_gflop_s"].items())
        after = ", ".join(f"{k} {v}" for k, v in dev.get("peak_gflop_s_after", {}).items())
        where = (
            "the median matmul rate measured between that row's timed steps"
            if result.get("options", {}).get("probe_peak")
            else "the peak measured at the start"
        )
        lines += [
            "",
            f"### {name}: measured matmul peak {peak} (after the run: {after})",
            "",
            f"Each fraction is of {where} (beside it)."
            + (" fp32 peaks probed with TF32 on, as cuDNN's convolutions run (fp32 TF32)." if tf32 else "")
            + (FROZEN if result.get("options", {}).get("frozen") else "")
            + " Peak MB: the rise over the timed block (weights, optimiser state and batch excluded).",
            "",
        ]
        lines += [
            "| model | px | batch | train img/s | train ms/img | train GFLOP/img | train % of peak "
            "| train peak rise MB | infer img/s | infer GFLOP/img | infer % of peak | infer peak rise MB |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in dev["rows"]:
            t, i = r["train"], r["infer"]
            lines.append(
                f"| {r['variant']} | {r['image_size']} | {r['batch']} | {t['images_per_s']:.2f} "
                f"| {_ms(t['ms_per_image'])} "
                f"| {t['gflop_per_image']:.2f} | {_fraction(t, tf32)} "
                f"| {_rise(t)} | {i['images_per_s']:.1f} | {i['gflop_per_image']:.2f} "
                f"| {_fraction(i, tf32)} | {_rise(i)} |"
            )
        lines += ["", "Training step GFLOP per image by part:", ""]
        lines += ["| model | px | " + " | ".join(PARTS) + " | counted step |", "|---|---|" + "---|" * (len(PARTS) + 1)]
        for r in dev["rows"]:
            p = r["gflop_by_part"]
            lines.append(
                f"| {r['variant']} | {r['image_size']} | "
                + " | ".join(f"{p[k]:.2f} ({100 * p[k] / r['train']['gflop_per_image']:.0f}%)" for k in PARTS)
                + f" | {r['train']['gflop_per_image']:.2f} |"
            )
        if dev["sweep"]:
            lines += ["", "Scaling (Du training step):", ""]
            lines += ["| px | batch | GFLOP/img | ms/img | % of peak | peak rise MB |", "|---|---|---|---|---|---|"]
            for r in dev["sweep"]:
                t = r["train"]
                lines.append(
                    f"| {r['image_size']} | {r['batch']} | {t['gflop_per_image']:.2f} | {_ms(t['ms_per_image'])} "
                    f"| {_fraction(t, tf32)} | {_rise(t)} |"
                )
    return "\n".join(lines)


def write_report(result: dict[str, Any], path: str | Path) -> Path:
    """``path`` (.json) with the result, and the tables beside it (.md)."""
    path = Path(path)
    atomic_write_json(path, result)
    atomic_write_text(path.with_suffix(".md"), format_report(result) + "\n")
    return path
