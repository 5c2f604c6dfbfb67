"""The choices the paper leaves open, measured: CAVGA-Du on demo-style data, one change at a time.

    .venv/bin/python benchmarks/design_study.py --out runs/design-study [--epochs 20] [--image-size 64]
        [--data-seed 1] [--only 0,4] [--row "NAME:section.key=value,..."]

Each row trains CAVGA-Du with the paper's defaults (at the given size and epochs) plus its overrides,
evaluates it on the generated set's test split, and reports the six metrics of the attention map
beside the residual baseline's pixel AUROC from the same forward pass. Prints a markdown table;
writes OUT/design_study.json.

The data set is generated with ``--data-seed`` (default 1): a validation set for choosing settings.
The demo's own data (seed 0) is its test set; choosing settings on it would tune on test labels.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from cavga.config import RunConfig, apply_overrides
from cavga.demo import demo_config
from cavga.demo_data import generate_demo_dataset
from cavga.evaluate import METRIC_KEYS, evaluate_run
from cavga.io_utils import atomic_write_json
from cavga.runtime import CHECKPOINT
from cavga.train import train

STUDY = {
    "defaults (paper weights, Eq. 1 sums, running-peak CAM)": [],
    "no attention expansion loss (w_ae=0)": ["loss.w_ae=0"],
    "per-element mean reductions in Eq. 1": ["loss.reduction=mean"],
    "per-image max CAM normalisation": ["model.attention_norm=image"],
    "latent stride 8 (8x8 attention grid at 64 px)": ["model.latent_stride=8"],
    "w_ae=1": ["loss.w_ae=1"],
    "mean reductions, w_ae=1": ["loss.reduction=mean", "loss.w_ae=1"],
    "mean reductions, w_ae=0.1": ["loss.reduction=mean", "loss.w_ae=0.1"],
    "mean reductions, w_ae=1, w_adv=0": ["loss.reduction=mean", "loss.w_ae=1", "loss.w_adv=0"],
    "mean reductions, w_ae=1, w_adv=0, stride 8": [
        "loss.reduction=mean",
        "loss.w_ae=1",
        "loss.w_adv=0",
        "model.latent_stride=8",
    ],
    "mean reductions, w_ae=1, w_adv=0, stride 4": [
        "loss.reduction=mean",
        "loss.w_ae=1",
        "loss.w_adv=0",
        "model.latent_stride=4",
    ],
    "w_ae=1000": ["loss.w_ae=1000"],
    "w_ae=10000": ["loss.w_ae=10000"],
    "stride 8, w_ae=100": ["model.latent_stride=8", "loss.w_ae=100"],
    "stride 8, w_ae=1000": ["model.latent_stride=8", "loss.w_ae=1000"],
    "stride 8, w_ae=10000": ["model.latent_stride=8", "loss.w_ae=10000"],
    "stride 4, w_ae=1000": ["model.latent_stride=4", "loss.w_ae=1000"],
    "mean reductions, w_ae=1, stride 8": ["loss.reduction=mean", "loss.w_ae=1", "model.latent_stride=8"],
    "128 px, stride 8, w_ae=4000": ["data.image_size=128", "model.latent_stride=8", "loss.w_ae=4000"],
    "128 px, stride 16, w_ae=4000": ["data.image_size=128", "loss.w_ae=4000"],
    "128 px, stride 16, w_ae=1000": ["data.image_size=128", "loss.w_ae=1000"],
    "128 px, paper defaults": ["data.image_size=128"],
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/design-study")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--only", help="comma-separated row numbers to run (default all)")
    ap.add_argument(
        "--data-seed",
        type=int,
        default=1,
        help="seed of the generated data set (default 1: a validation set; the demo itself uses seed 0)",
    )
    ap.add_argument(
        "--row",
        action="append",
        default=[],
        metavar="NAME:KEY=VAL[,KEY=VAL]",
        help="an extra row: a name and its overrides, e.g. 'mean:loss.reduction=mean,loss.w_ae=1'",
    )
    args = ap.parse_args()
    out = Path(args.out)
    generate_demo_dataset(out / "data", seed=args.data_seed, category="brick")
    study = dict(STUDY)
    for spec in args.row:
        name, _, overrides = spec.partition(":")
        study[name] = [o for o in overrides.split(",") if o]
    rows = []
    picks = {int(i) for i in args.only.split(",")} if args.only else set(range(len(study)))
    for i, (name, overrides) in enumerate(study.items()):
        if i not in picks:
            continue
        cfg = demo_config(out, "Du", args.epochs, args.image_size, args.device, args.data_seed, base=RunConfig())
        # this study's weights are per image (it predates loss.per_pixel_weights), and its masks
        # are at the paper's fixed threshold (it predates the held-out quantile default)
        cfg.loss.per_pixel_weights, cfg.infer.mask_quantile = False, None
        apply_overrides(cfg, overrides)
        run_dir = out / f"row{i}"
        t0 = time.perf_counter()
        train(cfg.validate(), run_dir, resume=(run_dir / CHECKPOINT).exists(), progress=False)
        result = evaluate_run(run_dir, device=args.device, progress=False)
        rows.append(
            {
                "row": i,
                "setting": name,
                "overrides": overrides,
                "metrics": result["metrics"],
                "residual_pixel_auroc": result["baseline_residual"]["pixel_auroc"],
                "seconds": round(time.perf_counter() - t0, 1),
            }
        )
        summary = {"data_seed": args.data_seed, "epochs": args.epochs, "image_size": args.image_size, "rows": rows}
        atomic_write_json(out / "design_study.json", summary)
    head = "| # | setting | " + " | ".join(METRIC_KEYS) + " | residual pixel_auroc |"
    print(head)
    print("|" + "---|" * (len(METRIC_KEYS) + 3))
    for r in rows:
        m = r["metrics"]
        cells = " | ".join("n/a" if m.get(k) is None else f"{m[k]:.3f}" for k in METRIC_KEYS)
        print(f"| {r['row']} | {r['setting']} | {cells} | {r['residual_pixel_auroc']:.3f} |")


if __name__ == "__main__":
    main()
