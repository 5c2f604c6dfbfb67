"""One markdown table from run folders: validation (painted defects on held-out normals) beside test.

    .venv/bin/python benchmarks/results_table.py NAME=RUN_DIR [NAME=RUN_DIR ...] [--store DIR]

For each run it reads ``validation.json`` (written by ``cavga validate``) and ``metrics.json``
(written by ``cavga evaluate``) and prints, per run, the attention's validation pixel AUROC and
AUPRO, then its test metrics and the same-run residual baseline's, and the per-defect IoU.
``--store DIR`` copies both files to DIR/NAME/ so the numbers in the docs stay with the code.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

TEST = ("image_auroc", "pixel_auroc", "iou", "detection_accuracy", "aupro", "f1_max")


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", metavar="NAME=RUN_DIR")
    ap.add_argument("--store", help="copy validation.json and metrics.json to STORE/NAME/")
    args = ap.parse_args()
    head = "| run | map | val pixel_auroc | val aupro | " + " | ".join(TEST) + " |"
    lines = [head, "|" + "---|" * (len(TEST) + 4)]
    defects = []
    for item in args.runs:
        name, _, run = item.partition("=")
        run = Path(run)
        val_path, test_path = run / "validation.json", run / "metrics.json"
        val = json.loads(val_path.read_text()) if val_path.exists() else None
        test = json.loads(test_path.read_text())
        for label, key in (("attention", "metrics"), ("residual", "baseline_residual")):
            v = val[key] if val else {}
            t = test[key]
            cells = [_fmt(v.get("pixel_auroc")), _fmt(v.get("aupro"))] + [_fmt(t.get(k)) for k in TEST]
            lines.append(f"| {name} | {label} | " + " | ".join(cells) + " |")
        per = ", ".join(f"{k} {v:.2f}" for k, v in test.get("per_defect_iou", {}).items())
        defects.append(f"* {name}: per-defect IoU (attention) {per}; test images {test['split'].get('n_test')}")
        if args.store:
            dest = Path(args.store) / name
            dest.mkdir(parents=True, exist_ok=True)
            for p in (val_path, test_path):
                if p.exists():
                    shutil.copyfile(p, dest / p.name)
    print("\n".join(lines))
    print()
    print("\n".join(defects))


if __name__ == "__main__":
    main()
