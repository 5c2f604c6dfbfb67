"""One line per Table 8 column of a finished grid (configs/table8-cpu*.yaml): the paper's IoU beside
ours, the other metrics, the same run's residual map, and the map and image score that training
chose on the painted held-out defects.  Prints a Markdown table (docs/results.md).

    python benchmarks/table8_summary.py runs/table8 [--seed 0] [--category bottle]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from cavga.grid.spec import ABLATION
from cavga.paper_numbers import paper_value

MAPS = {"inverse": "1 - A", "direct": "A", "anomalous": "A_ca", "normal": "1 - A_cn"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("grid_out", type=Path)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--category", default="bottle")
    args = ap.parse_args()
    print(
        "| column | model | IoU (paper) | pixel AUROC | AUPRO | detection accuracy | image AUROC "
        "| residual: IoU / pixel AUROC / AUPRO | map, image score |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for column, spec in ABLATION.items():
        d = json.loads((args.grid_out / spec.name / args.category / f"seed{args.seed}" / "metrics.json").read_text())
        m, r = d["metrics"], d["baseline_residual"]
        chosen = MAPS[d.get("attention_direction") or d["weak_map"]]
        published = paper_value("mvtec", "iou", args.category, column, "Table 8")
        print(
            f"| {column} | {spec.label} | {m['iou']:.3f} ({published:.2f}) "
            f"| {m['pixel_auroc']:.3f} | {m['aupro']:.3f} | {m['detection_accuracy']:.3f} | {m['image_auroc']:.3f} "
            f"| {r['iou']:.3f} / {r['pixel_auroc']:.3f} / {r['aupro']:.3f} | {chosen}, {d['image_score']} |"
        )


if __name__ == "__main__":
    main()
