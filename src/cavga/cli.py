"""The `cavga` command line: it parses arguments and calls library functions, nothing more."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import warnings
from pathlib import Path

from .cli_parser import build_parser
from .config import (
    MODELS,
    RunConfig,
    apply_overrides,
    load_config,
    to_dict,
)
from .errors import CavgaError

# Command-line flags and the config keys they set (one flag may set two keys).
_FLAGS = (
    ("--data", "data.root", "data"),
    ("--layout", "data.layout", "layout"),
    ("--category", "data.category", "category"),
    ("--image-size", "data.image_size", "image_size"),
    ("--resize", "data.resize", "resize"),
    ("--seed", "data.seed", "seed"),
    ("--anomalous-fraction", "data.anomalous_fraction", "anomalous_fraction"),
    ("--model", "model.variant", "model"),
    ("--flat-latent", "model.flat_latent", "flat_latent"),
    ("--backbone", "model.backbone", "backbone"),
    ("--backbone-weights", "model.backbone_weights", "backbone_weights"),
    ("--freeze-encoder", "model.freeze_encoder", "freeze_encoder"),
    ("--encoder-init", "model.encoder_init", "encoder_init"),
    ("--encoder-stride", "model.encoder_stride", "encoder_stride"),
    ("--epochs", "train.epochs", "epochs"),
    ("--device", "train.device", "device"),
    ("--seed", "train.seed", "seed"),
    ("--batch-size", "train.batch_size", "batch_size"),
    ("--lr", "train.lr", "lr"),
    ("--augment", "train.augment", "augment"),
    ("--validate-every", "train.validate_every", "validate_every"),
    ("--restarts", "train.restarts", "restarts"),
    ("--patience", "train.patience", "patience"),
    ("--allow-random-init", "train.allow_random_init", "allow_random_init"),
)
# What a resumed run may change; every other flag must agree with the run's config.yaml.
_RESUMABLE = ("train.epochs", "train.device", "train.allow_random_init", "train.patience")


def _flag_values(args: argparse.Namespace) -> dict[str, object]:
    return {key: getattr(args, attr, None) for _, key, attr in _FLAGS}


def _run_config(args: argparse.Namespace) -> RunConfig:
    """Defaults < --config file < explicit flags < --set overrides."""
    cfg = load_config(args.config) if args.config else RunConfig()
    apply_overrides(cfg, _flag_values(args))
    apply_overrides(cfg, args.overrides)
    return cfg


def _resume_config(args: argparse.Namespace, run_dir: Path) -> RunConfig:
    """The run's own config.yaml; a flag that disagrees with it is an error naming the flag."""
    from .runfolder import same_folder

    if args.config:
        raise CavgaError(f"--config cannot be combined with --resume: {run_dir} keeps its own config.yaml")
    cfg = load_config(run_dir / "config.yaml", saved=True)
    saved = to_dict(cfg)
    asked = RunConfig()
    apply_overrides(asked, _flag_values(args))
    for flag, key, attr in _FLAGS:
        if getattr(args, attr, None) is None or key in _RESUMABLE:
            continue
        section, _, name = key.partition(".")
        have, want = saved[section][name], getattr(getattr(asked, section), name)
        same = have == want or (key == "data.root" and have and same_folder(have, want))
        if not same:
            raise CavgaError(
                f"--resume: {flag} {getattr(args, attr)} conflicts with the run in {run_dir}, started with "
                f"{key}={have!r} (leave the flag out, or start a new run in another --out)"
            )
    apply_overrides(cfg, {"train.epochs": args.epochs, "train.device": args.device, "train.patience": args.patience})
    apply_overrides(cfg, args.overrides)
    return cfg


def _many_categories(args: argparse.Namespace) -> bool:
    from .categories import is_many

    return is_many(args.category)


def _train_categories(args: argparse.Namespace) -> int:
    from .categories import SUMMARY, format_summary, resolve_categories, train_categories

    cfg = _run_config(args)
    if cfg.data.layout != "mvtec":
        raise CavgaError(f"--category {args.category}: several categories need --layout mvtec")
    if cfg.data.root is None and args.resume:  # a sweep keeps no config of its own to resume from
        raise CavgaError(
            f"--resume --category {args.category}: a sweep resumes by itself; repeat its own command, with --data "
            "(finished categories are skipped, an interrupted one continues)"
        )
    if cfg.data.root is None:
        raise CavgaError(f"--category {args.category}: --data is required (the MVTec AD folder of the categories)")
    categories = resolve_categories(cfg.data.root, args.category)

    def done(row: dict) -> None:
        print(f"{row['category']}: {row['status']} ({row['seconds']} s)", flush=True)

    rows = train_categories(cfg, categories, args.out, not args.no_progress, done, check=not args.no_check)
    print(format_summary(rows))
    failed = [r["category"] for r in rows if r["status"].startswith("failed")]
    if failed:
        raise CavgaError(
            f"{len(failed)} of {len(rows)} categories failed ({', '.join(failed)}; their errors are in "
            f"{Path(args.out) / SUMMARY}.md); the others were done"
        )
    print(f"written: {Path(args.out) / SUMMARY}.md and .json")
    return 0


def _painted_check(run_dir: Path, device: str) -> None:
    """After training: `cavga validate` on the run's held-out normals, then :func:`_say_check`."""
    from .check import painted_check

    _say_check(run_dir, painted_check(run_dir, device))


def _say_check(run_dir: Path, result: dict | None) -> None:
    """The painted-defect check's summary line, and a warning where the map or the verdict barely
    finds painted defects; where the run held out no normal image, why, and a warning that its
    thresholds were fitted on training images."""
    from .check import check_summary, check_warnings, skipped_check
    from .validation import VALIDATION_FILE

    if result is None:
        line, messages = skipped_check(run_dir)
        print(line)
        for message in messages:
            warnings.warn(message, stacklevel=1)
        return
    print(f"{check_summary(result)}; written: {run_dir / VALIDATION_FILE}")
    for message in check_warnings(result):
        warnings.warn(message, stacklevel=1)


def _print_result(result: dict) -> None:
    from .evaluate import format_table, normal_only_test_note

    print(format_table([result]))
    undefined = result["metrics"].get("undefined")
    normal_only = normal_only_test_note(result)
    if normal_only:  # no anomalous test image: say so, and the false-alarm rate, which is defined
        print(normal_only)
    elif result.get("pixel_ground_truth") is False:
        print("no pixel masks in this test set: pixel metrics absent (image AUROC and detection accuracy only)")
    elif undefined:
        print(f"undefined on this test set: {', '.join(undefined)}")


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings as one line, ``cavga: warning: ...``, without the line of Python source; under torchrun
    rank 0 alone says them (every rank would say the same)."""
    if os.environ.get("RANK", "0") != "0":
        return
    print(f"cavga: warning: {message}", file=file or sys.stderr)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    speed = argv[:1] == ["benchmark"] and any(_is_speed_flag(t) for t in argv[1:])  # its own parser
    args = None if speed else build_parser().parse_args(argv)
    warnings.showwarning = _show_warning
    try:
        return _speed(argv[1:]) if speed else _dispatch(args)
    except CavgaError as e:
        _say_error(_with_flag(str(e), args))
        return 2
    except OSError as e:  # a file the OS refused (disk full, permission): one line; a bug keeps its traceback
        if not isinstance(e.filename, (str, bytes, os.PathLike)):  # none, or a descriptor: a bug's
            raise
        _say_error(f"{os.fsdecode(e.filename)}: {e.strerror or e}")
        return 2
    except KeyboardInterrupt:
        if os.environ.get("RANK", "0") != "0":  # under torchrun, rank 0 speaks for all
            return 130
        command = None if args is None else args.command
        again = {  # how each training command continues
            "train": "; --resume continues from the last saved epoch (or from the start if none was saved)",
            "demo": "; the same command again continues from the last saved epoch",
            "benchmark": "; the same command again continues (finished cells are kept, a cell from its last epoch)",
        }
        print("cavga: interrupted" + again.get(command, ""), file=sys.stderr)
        return 130


def _with_flag(message: str, args: argparse.Namespace | None) -> str:
    """A configuration error about a key the user gave as a flag names the flag as typed, beside the
    key (``--image-size (data.image_size): 48 is not a power of two``); a ``--set`` of that key wins."""
    key, sep, rest = message.partition(": ")
    if args is None or not sep:
        return message
    given = {item.partition("=")[0].strip() for item in getattr(args, "overrides", None) or []}
    for flag, dotted, attr in _FLAGS:
        if dotted == key and key not in given and getattr(args, attr, None) is not None:
            return f"{flag} ({key}): {rest}"
    return message


def _say_error(message: str) -> None:
    rank = os.environ.get("RANK", "0")  # under torchrun every rank may fail alike: say which one speaks
    print(f"cavga: error{'' if rank == '0' else f' (rank {rank})'}: {message}", file=sys.stderr)


def _is_speed_flag(token: str) -> bool:
    """``--speed`` or an abbreviation argparse would take for it (``--sp``...)."""
    return token.startswith("--sp") and "--speed".startswith(token)


def _speed(argv: list[str]) -> int:
    """`cavga benchmark --speed [options]`: the speed benchmark's own parser (cavga.speed.command)."""
    from .speed.command import CLI_OUT, speed_main

    mixed = "the speed benchmark takes none of the training benchmark's options (--grid, --data, --models, ...)"
    rest = [t for t in argv if not _is_speed_flag(t)]
    return speed_main(rest, "cavga benchmark --speed", CLI_OUT, "The speed benchmark (docs/performance.md).", mixed)


def _grid(args: argparse.Namespace) -> int:
    """`cavga benchmark --grid FILE.yaml --out OUT`."""
    from .grid import load_grid, progress_line, run_grid

    for flag in ("config", "data", "layout", "category", "models", "seed"):
        if getattr(args, flag) is not None:
            raise CavgaError(f"--{flag} cannot be combined with --grid: the grid file sets it")
    spec = load_grid(args.grid)
    if args.seeds is not None:
        spec = dataclasses.replace(spec, seeds=_seed_list(args.seeds))

    def show(cell, status: str) -> None:
        print(progress_line(cell, status), flush=True)

    rows = run_grid(spec, args.out, _flag_values(args), args.overrides, not args.no_progress, show, args.jobs)
    print(f"{len(rows)} cells; written: {Path(args.out) / 'results.md'}, results.csv and results.json")
    return 0


def _seed_list(text: str) -> tuple[int, ...]:
    """``--seeds 0,1,2`` as a tuple of distinct integers."""
    try:
        seeds = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise CavgaError(f"--seeds {text!r}: expected comma-separated integers, e.g. 0,1,2") from None
    if len(set(seeds)) != len(seeds):
        raise CavgaError(f"--seeds {text!r}: a seed is repeated")
    return seeds


def _dispatch(args: argparse.Namespace) -> int:
    from .distributed import env_world_size

    if env_world_size() > 1 and (args.command != "train" or _many_categories(args)):  # under torchrun
        raise CavgaError(
            f"cavga {args.command}{' --category ' + args.category if args.command == 'train' else ''} runs in one "
            "process; under torchrun only `cavga train` of one category trains (docs/performance.md)"
        )
    if args.command == "train":
        from .train import train

        run_dir = Path(args.out)
        if _many_categories(args):
            return _train_categories(args)
        if args.resume and (run_dir / "config.yaml").is_file():
            cfg = _resume_config(args, run_dir)
        elif args.resume and args.data is None:
            from .restarts import RESTARTS_FOLDER

            if (run_dir / RESTARTS_FOLDER).is_dir():  # stopped while its restart candidates trained
                raise CavgaError(
                    f"--resume: {run_dir} holds only restart candidates ({RESTARTS_FOLDER}/), no config.yaml yet; "
                    "rerun the command that started it, with --resume: the candidates continue where they stopped"
                )
            why = "folder not found" if not run_dir.exists() else "it holds no config.yaml"
            raise CavgaError(f"--resume: {run_dir} holds no run to resume ({why}); start one with --data")
        else:
            cfg = _run_config(args)
            if cfg.data.root is None and cfg.data.layout != "digits":
                raise CavgaError("--data is required (or run `cavga demo` for the embedded demo data)")
        ckpt = train(cfg, run_dir, resume=args.resume, progress=not args.no_progress)
        if os.environ.get("RANK", "0") == "0":  # under torchrun, rank 0 speaks for all
            print(f"trained: {ckpt}")
            if not args.no_check:
                _painted_check(run_dir, cfg.train.device)
        return 0
    if args.command in ("evaluate", "validate", "redecide", "export", "report"):
        from .evaluate import METRICS_FILE
        from .runfolder import check_run_dir

        check_run_dir(args.run_dir, *([METRICS_FILE] if args.command == "report" else []))
    if args.command == "evaluate":
        from .evaluate import evaluate_run

        result = evaluate_run(args.run_dir, device=args.device, progress=not args.no_progress, infer=args.overrides)
        _print_result(result)
        page = Path(args.run_dir) / "report" / "index.html"
        print(
            f"written: {Path(args.run_dir) / 'metrics.json'}"
            + (f" and {page} (open it in a browser)" if page.is_file() else "")
        )
        return 0
    if args.command == "validate":
        from .mask_threshold import mask_label, mask_sweep_text
        from .validation import VALIDATION_FILE, validate_run

        result = validate_run(args.run_dir, args.device, args.paint_seed, args.copies, infer=args.overrides)
        _print_result(result)
        read = ", averaged over half-cell shifts" if result["shifted_map"] is True else ""  # infer.shifted_map
        if result.get("enlarged_map") is True:  # infer.enlarged_map
            read = ", averaged with the image enlarged twofold" + read
        if result.get("map_blur"):  # infer.map_blur
            read += f", blurred by a Gaussian of {result['map_blur']:g} px"
        if result["attention_direction"]:
            shown = {"inverse": "1 - A", "direct": "A", "two_sided": "|A - A's normal level|"}
            print(f"anomaly map: {shown[result['attention_direction']]}{read}")
        if result["weak_map"]:
            print(f"anomaly map: {'1 - A_cn' if result['weak_map'] == 'normal' else 'A_ca'}{read}")
        scores = result["image_auroc_by_score"]
        print("image AUROC by infer.image_score: " + ", ".join(f"{k}: {v}" for k, v in scores.items() if v is not None))
        if result["mask_quantile_iou"]:
            # "1.0+0.05": margin 0.05; "0.9@0.5": peak fraction 0.5
            in_use = mask_label(result["mask_quantile"], result["mask_margin"], result["mask_peak_fraction"])
            faded = f"; defects faded to U({result['mask_fade']:g}, 1)" if result["mask_fade"] < 1 else ""
            if result["mask_min_area"]:  # the sweep is of unfiltered masks; the metrics above are filtered
                area = result["mask_min_area"]
                in_use = f"{result['mask_quantile']:.6g}, regions under {area:g} of the image dropped"
            print(f"IoU by infer.mask_quantile[+mask_margin][@mask_peak_fraction] (in use: {in_use}{faded}): "
                  f"{mask_sweep_text(result['mask_quantile_iou'])}")  # fmt: skip
        if result["baseline_residual"]:  # the residual's mask level (cavga.mask_threshold.decide_residual_mask)
            t, r = result["residual_mask"]
            print(f"the reconstruction residual's mask: {t:.3g} of its held-out peak, raised {r:g} to each map's peak")
        print(f"protocol: {result['protocol']}; written: {Path(args.run_dir) / VALIDATION_FILE}")
        return 0
    if args.command == "redecide":
        from .io_utils import check_output_folder
        from .redecide import redecide_run

        check_output_folder(args.out, "OUT", trial=True)  # not after the run has been copied
        for key, value in redecide_run(args.run_dir, args.out, args.overrides, args.device).items():
            print(f"{key}: {value[key]} ({value.get('protocol', 'as set')})")
        print(f"written: {args.out} (check it with `cavga validate {args.out}`)")
        return 0
    if args.command == "predict":
        from .predict import predict_to_folder

        def show(r: dict) -> None:
            print(f"{r['verdict']:>9}  score={r['score']:.3f}  {r['path']}", flush=True)

        def report(message: str) -> None:
            print(f"cavga: error: {message}", file=sys.stderr, flush=True)

        predict_to_folder(
            args.run_dir,
            args.inputs,
            args.out,
            args.device,
            args.overrides,
            on_result=show,
            on_error=report,
            maps=args.maps,
            report=args.report,
        )
        print(f"written: {Path(args.out) / 'predictions.json'}" + (" and report/index.html" if args.report else ""))
        return 0
    if args.command == "report":
        from .report import write_run_report

        print(f"written: {write_run_report(args.run_dir)}")
        return 0
    if args.command == "benchmark" and args.grid:
        return _grid(args)
    if args.command == "export":
        from .export import export_run

        print(f"written: {export_run(args.run_dir, args.out, args.format, args.overrides)}")
        return 0
    if args.command == "benchmark":
        from .benchmark import run_benchmark
        from .evaluate import format_table

        if args.seeds is not None:
            raise CavgaError("--seeds is for --grid; without it, --seed seeds the one run per variant")

        if args.data is None:
            raise CavgaError("benchmark: give --data (and --models), or --grid FILE.yaml")
        if args.jobs != 1:
            raise CavgaError("--jobs runs the cells of a --grid at once; without --grid, variants run one by one")
        variants = [v.strip() for v in (args.models or "Du,Ru,Dw,Rw").split(",") if v.strip()]
        bad = [v for v in variants if v not in MODELS]
        if bad or not variants:
            raise CavgaError(
                f"--models: unknown variant(s) {', '.join(bad) or '(none)'} (choose from {', '.join(MODELS)})"
            )
        args.model = variants[0]
        results = run_benchmark(_run_config(args), variants, args.out, progress=not args.no_progress)
        print(format_table(results))
        print(f"written: {Path(args.out) / 'results.json'}, results.md and report.html (open it in a browser)")
        return 0
    if args.command == "demo":
        from .demo import demo_config, run_demo

        out = Path(args.out)
        base = load_config(args.config) if args.config else None
        cfg = demo_config(out, args.model, args.epochs, args.image_size, args.device, args.seed, base)
        # every other training flag as `cavga train` reads it (demo_config set the data and these)
        own = ("data.root", "data.layout", "data.category", "data.image_size", "data.seed", "model.variant")
        own += ("train.epochs", "train.device", "train.seed")
        apply_overrides(cfg, {k: v for k, v in _flag_values(args).items() if k not in own})
        apply_overrides(cfg, args.overrides)
        result, checked = run_demo(out, cfg.validate(), progress=not args.no_progress)
        _print_result(result)
        _say_check(out / "run", checked)  # what a user without test anomalies would see
        print(
            f"written: {out / 'run' / 'metrics.json'}; overlays in {out / 'predictions'} and {out / 'run' / 'overlays'}"
        )
        print(f"report: {out / 'run' / 'report' / 'index.html'} (open it in a browser)")
        return 0
    raise AssertionError(args.command)


if __name__ == "__main__":
    sys.exit(main())
