"""Choose settings without test images: train one run per row, score it by `cavga validate`.

    .venv/bin/python benchmarks/validation_study.py --out runs/vs-bottle \
        --data ../shared/data/mvtec --layout mvtec --category bottle --image-size 128 --epochs 30 \
        --row "mu_sum:loss.w_ae=4000" --row "energy:model.attention_score=mu_energy,loss.w_ae=4000"

Without --data it uses the embedded demo data generated with --data-seed (default 1; the demo's own
seed 0 is its test set). Each row trains CAVGA with the defaults plus the row's overrides, then
scores it on the run's held-out normal images, clean and with painted defects (cavga.validation):
never the test split, never a real anomaly. Prints a markdown table; writes OUT/validation_study.json.
A row whose run folder already holds validation.json is read back, not retrained.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from cavga.config import RunConfig, apply_overrides
from cavga.demo import demo_config
from cavga.demo_data import generate_demo_dataset
from cavga.io_utils import atomic_write_json
from cavga.runtime import CHECKPOINT
from cavga.train import train
from cavga.validation import VALIDATION_FILE, validate_run

COLUMNS = ("pixel_auroc", "aupro", "f1_max", "image_auroc", "iou", "detection_accuracy")


def _row(spec: str) -> tuple[str, list[str]]:
    name, _, overrides = spec.partition(":")
    return name.strip(), [o.strip() for o in overrides.split(",") if o.strip()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--data", help="data set root (default: demo data generated with --data-seed)")
    ap.add_argument("--layout", default="mvtec")
    ap.add_argument("--category")
    ap.add_argument("--data-seed", type=int, default=1)
    ap.add_argument("--image-size", type=int, default=128)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--model", default="Du")
    ap.add_argument("--row", action="append", required=True, metavar="NAME:section.key=value,...")
    args = ap.parse_args()
    out = Path(args.out)
    rows = []
    for name, overrides in map(_row, args.row):
        run_dir = out / name.replace(" ", "_")
        done = run_dir / VALIDATION_FILE
        if not done.exists():
            if args.data:
                cfg = RunConfig()
                apply_overrides(
                    cfg, {"data.root": args.data, "data.layout": args.layout, "data.category": args.category}
                )
                cfg.model.variant = args.model
            else:
                cfg = demo_config(out, args.model, seed=args.data_seed, base=RunConfig())
                generate_demo_dataset(cfg.data.root, seed=args.data_seed, category=cfg.data.category)
            cfg.data.image_size, cfg.train.epochs = args.image_size, args.epochs
            apply_overrides(cfg, overrides).validate()
            t0 = time.perf_counter()
            train(cfg, run_dir, resume=(run_dir / CHECKPOINT).exists(), progress=False)
            result = validate_run(run_dir, device=cfg.train.device)
            result["train_seconds"] = round(time.perf_counter() - t0, 1)
            result["overrides"] = overrides
            atomic_write_json(done, result)
        result = json.loads(done.read_text())
        rows.append({"name": name, **result})
        print(f"{name}: " + " ".join(f"{k}={result['metrics'][k]:.3f}" for k in COLUMNS), flush=True)

    head = "| setting | " + " | ".join(COLUMNS) + " | residual pixel_auroc | residual aupro |"
    lines = [head, "|" + "---|" * (len(COLUMNS) + 3)]
    for r in rows:
        m, b = r["metrics"], r["baseline_residual"]
        cells = ["n/a" if m.get(k) is None else f"{m[k]:.3f}" for k in COLUMNS]
        lines.append(f"| {r['name']} | " + " | ".join(cells) + f" | {b['pixel_auroc']:.3f} | {b['aupro']:.3f} |")
    print("\n".join(lines))
    atomic_write_json(out / "validation_study.json", {"args": vars(args), "rows": rows})


if __name__ == "__main__":
    main()
