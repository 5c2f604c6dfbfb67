"""One line per Table 8 column of a finished grid (configs/table8-cpu*.yaml): the paper's IoU beside
ours, the other metrics, the same run's residual map, and the map and image score that training
chose on the painted held-out defects; then the paper's eight comparisons.  Prints Markdown
tables (docs/results.md).

    python benchmarks/table8_summary.py runs/table8 [--seeds 0,1] [--category bottle]

With several seeds a cell is mean ± sample std, and a comparison counts as shown only when every
seed's difference has the same sign and the mean difference is larger than the larger seed spread
(sample std) of its two columns: differences inside the spread are reported as "level".
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from cavga.grid.spec import ABLATION
from cavga.paper_numbers import paper_value

MAPS = {"inverse": "1 - A", "direct": "A", "anomalous": "A_ca", "normal": "1 - A_cn"}
METRICS = ("iou", "pixel_auroc", "aupro", "detection_accuracy", "image_auroc")
# Table 8's comparisons (Sec. 6): (question, from column, to column)
COMPARISONS = (
    ("L_ae, flattened z", "c1", "c2"),
    ("L_ae, convolutional z", "c3", "c4"),
    ("conv z, without L_ae", "c1", "c3"),
    ("conv z, with L_ae", "c2", "c4"),
    ("L_cga, flattened z", "c5", "c6"),
    ("L_cga, convolutional z", "c7", "c8"),
    ("conv z, without L_cga", "c5", "c7"),
    ("conv z, with L_cga", "c6", "c8"),
)


def _cell(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{np.mean(values):.3f} ± {np.std(values, ddof=1):.3f}"


def verdict(a: list[float], b: list[float], paper_gain: float) -> str:
    """Whether ours moves as the paper's (``paper_gain`` = its b - a) by more than the seed spread."""
    diffs = np.asarray(b) - np.asarray(a)  # per seed
    if len(diffs) < 2:
        return "one seed: " + ("same direction" if diffs[0] * paper_gain > 0 else "other direction")
    spread = max(np.std(a, ddof=1), np.std(b, ddof=1))
    if not (np.all(diffs > 0) or np.all(diffs < 0)) or abs(diffs.mean()) <= spread:
        return f"level (difference {diffs.mean():+.3f}, spread {spread:.3f})"
    same = diffs.mean() * paper_gain > 0
    return f"**{'yes' if same else 'no, the other way'}** ({diffs.mean():+.3f}, spread {spread:.3f})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("grid_out", type=Path)
    ap.add_argument("--seeds", default="0", help="comma-separated seeds (a cell is their mean ± std)")
    ap.add_argument("--category", default="bottle")
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    cells, paper = {}, {}
    print(
        "| column | model | IoU (paper) | pixel AUROC | AUPRO | detection accuracy | image AUROC "
        "| residual: IoU / pixel AUROC / AUPRO | map, image score (per seed) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for column, spec in ABLATION.items():
        runs = [
            json.loads((args.grid_out / spec.name / args.category / f"seed{s}" / "metrics.json").read_text())
            for s in seeds
        ]
        cells[column] = {k: [d["metrics"][k] for d in runs] for k in METRICS}
        residual = {k: [d["baseline_residual"][k] for d in runs] for k in ("iou", "pixel_auroc", "aupro")}
        chosen = "; ".join(f"{MAPS[d.get('attention_direction') or d['weak_map']]}, {d['image_score']}" for d in runs)
        paper[column] = paper_value("mvtec", "iou", args.category, column, "Table 8")
        print(
            f"| {column} | {spec.label} | {_cell(cells[column]['iou'])} ({paper[column]:.2f}) | "
            + " | ".join(_cell(cells[column][k]) for k in METRICS[1:])
            + f" | {' / '.join(_cell(v) for v in residual.values())} | {chosen} |"
        )
    print(
        "\n| comparison | paper IoU | ours IoU | IoU as the paper? | pixel AUROC as the paper? | AUPRO as the paper? |"
    )
    print("|---|---|---|---|---|---|")
    for question, a, b in COMPARISONS:
        gain = paper[b] - paper[a]
        print(
            f"| {question} ({a} -> {b}) | {paper[a]:.2f} -> {paper[b]:.2f} | "
            f"{_cell(cells[a]['iou'])} -> {_cell(cells[b]['iou'])} | "
            + " | ".join(verdict(cells[a][k], cells[b][k], gain) for k in ("iou", "pixel_auroc", "aupro"))
            + " |"
        )


if __name__ == "__main__":
    main()
