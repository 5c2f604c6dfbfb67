"""The speed benchmark's result as markdown tables and a JSON file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..io_utils import atomic_write_json
from .flops import PARTS


def _mem(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.0f}"


def _ms(v: float) -> str:
    """Three significant digits: 161 ms on a CPU, 1.55 ms on a GPU."""
    return f"{v:.3g}"


def _fraction(m: dict[str, Any]) -> str:
    """The fraction and the peak (GFLOP/s) it is of, as "77% of 103 (fp32)"."""
    peak = m.get("peak_gflop_s")
    return f"{100 * m['fraction_of_peak']:.0f}%" + ("" if peak is None else f" of {peak:.0f}") + f" ({m['peak_dtype']})"


def format_report(result: dict[str, Any]) -> str:
    """Markdown: per device, the peak, the grid (training, inference), FLOPs by part, the sweeps."""
    env = result["environment"]
    lines = [
        f"torch {env['torch']}, {env['processor']}, {env['threads']} threads, load average {env['load_average_1min']}",
    ]
    for name, dev in result["devices"].items():
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
            + (
                " Encoders pretrained and frozen, with mu_energy (`--frozen`: the defaults' set-up)."
                if result.get("options", {}).get("frozen")
                else ""
            ),
            "",
        ]
        lines += [
            "| model | px | batch | train img/s | train ms/img | train GFLOP/img | train % of peak | train peak MB "
            "| infer img/s | infer GFLOP/img | infer % of peak | infer peak MB |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in dev["rows"]:
            t, i = r["train"], r["infer"]
            lines.append(
                f"| {r['variant']} | {r['image_size']} | {r['batch']} | {t['images_per_s']:.2f} "
                f"| {_ms(t['ms_per_image'])} "
                f"| {t['gflop_per_image']:.2f} | {_fraction(t)} "
                f"| {_mem(t['peak_memory_mb'])} | {i['images_per_s']:.1f} | {i['gflop_per_image']:.2f} "
                f"| {_fraction(i)} | {_mem(i['peak_memory_mb'])} |"
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
            lines += ["| px | batch | GFLOP/img | ms/img | % of peak | peak MB |", "|---|---|---|---|---|---|"]
            for r in dev["sweep"]:
                t = r["train"]
                lines.append(
                    f"| {r['image_size']} | {r['batch']} | {t['gflop_per_image']:.2f} | {_ms(t['ms_per_image'])} "
                    f"| {_fraction(t)} | {_mem(t['peak_memory_mb'])} |"
                )
    return "\n".join(lines)


def write_report(result: dict[str, Any], path: str | Path) -> Path:
    """``path`` (.json) with the result, and the tables beside it (.md)."""
    path = Path(path)
    atomic_write_json(path, result)
    from ..io_utils import atomic_write_text

    atomic_write_text(path.with_suffix(".md"), format_report(result) + "\n")
    return path
