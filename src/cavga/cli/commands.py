"""One function per `cavga` subcommand: the parsed arguments to one library call, and what it prints."""

from __future__ import annotations

import dataclasses
import os
import sys
from argparse import Namespace
from pathlib import Path

from ..config import MODELS, RunConfig, apply_overrides, load_config
from ..errors import CavgaError
from .flags import flag_values, resume_config, run_config
from .show import painted_check, print_result, print_validation, say_check


def dispatch(args: Namespace) -> int:
    """Run the subcommand ``args`` names; its exit status."""
    from ..distributed import env_world_size

    if env_world_size() > 1 and (args.command != "train" or _many_categories(args)):  # under torchrun
        raise CavgaError(
            f"cavga {args.command}{' --category ' + args.category if args.command == 'train' else ''} runs in one "
            "process; under torchrun only `cavga train` of one category trains (docs/performance.md)"
        )
    if args.command in ("evaluate", "validate", "redecide", "export", "report"):
        from ..evaluate import METRICS_FILE
        from ..runfolder import check_run_dir

        check_run_dir(args.run_dir, *([METRICS_FILE] if args.command == "report" else []))
    if args.command == "benchmark" and args.grid:
        return _grid(args)
    return COMMANDS[args.command](args)


def _train(args: Namespace) -> int:
    from ..train import train

    run_dir = Path(args.out)
    if _many_categories(args):
        return _train_categories(args)
    if args.resume and (run_dir / "config.yaml").is_file():
        cfg = resume_config(args, run_dir)
    elif args.resume and args.data is None:
        from ..restarts import RESTARTS_FOLDER

        if (run_dir / RESTARTS_FOLDER).is_dir():  # stopped while its restart candidates trained
            raise CavgaError(
                f"--resume: {run_dir} holds only restart candidates ({RESTARTS_FOLDER}/), no config.yaml yet; "
                "rerun the command that started it, with --resume: the candidates continue where they stopped"
            )
        why = "folder not found" if not run_dir.exists() else "it holds no config.yaml"
        raise CavgaError(f"--resume: {run_dir} holds no run to resume ({why}); start one with --data")
    else:
        cfg = run_config(args)
        if cfg.data.root is None and cfg.data.layout != "digits":
            raise CavgaError("--data is required (or run `cavga demo` for the embedded demo data)")
    ckpt = train(cfg, run_dir, resume=args.resume, progress=not args.no_progress)
    if os.environ.get("RANK", "0") == "0":  # under torchrun, rank 0 speaks for all
        print(f"trained: {ckpt}")
        if not args.no_check:
            painted_check(run_dir, cfg.train.device)
    return 0


def _many_categories(args: Namespace) -> bool:
    from ..categories import is_many

    return is_many(args.category)


def _train_categories(args: Namespace) -> int:
    from ..categories import SUMMARY, format_summary, resolve_categories, train_categories

    cfg = run_config(args)
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


def _evaluate(args: Namespace) -> int:
    from ..evaluate import evaluate_run

    result = evaluate_run(args.run_dir, device=args.device, progress=not args.no_progress, infer=args.overrides)
    print_result(result)
    page = Path(args.run_dir) / "report" / "index.html"
    print(
        f"written: {Path(args.run_dir) / 'metrics.json'}"
        + (f" and {page} (open it in a browser)" if page.is_file() else "")
    )
    return 0


def _validate(args: Namespace) -> int:
    from ..validation import validate_run

    result = validate_run(args.run_dir, args.device, args.paint_seed, args.copies, infer=args.overrides)
    print_validation(result, Path(args.run_dir))
    return 0


def _redecide(args: Namespace) -> int:
    import shlex

    from ..io_utils import check_output_folder
    from ..redecide import redecide_run
    from ..runfolder import RunData

    check_output_folder(args.out, "OUT", trial=True)  # not after the run has been copied
    for key, value in redecide_run(args.run_dir, args.out, args.overrides, args.device).items():
        print(f"{key}: {value[key]} ({value.get('protocol', 'as set')})")
    if any(r.label == 0 for r in RunData.load(args.out).val):  # what `cavga validate` paints defects on
        print(f"written: {args.out} (check it with `cavga validate {shlex.quote(str(args.out))}`)")
    else:  # validate would refuse it: say why instead
        from ..validation import no_held_out_reason

        why = no_held_out_reason(args.out)
        print(f"written: {args.out} (no painted-defect check: it held out no normal images: {why})")
    return 0


def _predict(args: Namespace) -> int:
    from ..predict import predict_to_folder

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


def _report(args: Namespace) -> int:
    from ..report import write_run_report

    print(f"written: {write_run_report(args.run_dir)}")
    return 0


def _export(args: Namespace) -> int:
    from ..export import export_run

    print(f"written: {export_run(args.run_dir, args.out, args.format, args.overrides)}")
    return 0


def _benchmark(args: Namespace) -> int:
    """`cavga benchmark --data ... --models ...`: each variant trained and evaluated, one table."""
    from ..benchmark import run_benchmark
    from ..evaluate import format_table

    if args.seeds is not None:
        raise CavgaError("--seeds is for --grid; without it, --seed seeds the one run per variant")
    if args.data is None:
        raise CavgaError("benchmark: give --data (and --models), or --grid FILE.yaml")
    if args.jobs != 1:
        raise CavgaError("--jobs runs the cells of a --grid at once; without --grid, variants run one by one")
    variants = [v.strip() for v in (args.models or "Du,Ru,Dw,Rw").split(",") if v.strip()]
    bad = [v for v in variants if v not in MODELS]
    if bad or not variants:
        raise CavgaError(f"--models: unknown variant(s) {', '.join(bad) or '(none)'} (choose from {', '.join(MODELS)})")
    args.model = variants[0]
    results = run_benchmark(run_config(args), variants, args.out, progress=not args.no_progress)
    print(format_table(results))
    print(f"written: {Path(args.out) / 'results.json'}, results.md and report.html (open it in a browser)")
    return 0


def _grid(args: Namespace) -> int:
    """`cavga benchmark --grid FILE.yaml --out OUT`."""
    from ..grid import load_grid, progress_line, run_grid

    for flag in ("config", "data", "layout", "category", "models", "seed"):
        if getattr(args, flag) is not None:
            raise CavgaError(f"--{flag} cannot be combined with --grid: the grid file sets it")
    spec = load_grid(args.grid)
    if args.seeds is not None:
        spec = dataclasses.replace(spec, seeds=_seed_list(args.seeds))

    def show(cell, status: str) -> None:
        print(progress_line(cell, status), flush=True)

    rows = run_grid(spec, args.out, flag_values(args), args.overrides, not args.no_progress, show, args.jobs)
    print(f"{len(rows)} cells; written: {Path(args.out) / 'results.md'}, results.csv and results.json")
    return 0


def _seed_list(text: str) -> tuple[int, ...]:
    """``--seeds 0,1,2`` as a tuple of distinct integers."""
    try:
        seeds = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise CavgaError(f"--seeds {text!r}: expected comma-separated integers, e.g. 0,1,2") from None
    if any(s < 0 for s in seeds):  # as every seed flag (cli.parser.seed): -S would share S's data split
        raise CavgaError(f"--seeds {text!r}: give seeds of 0 or more")
    if len(set(seeds)) != len(seeds):
        raise CavgaError(f"--seeds {text!r}: a seed is repeated")
    return seeds


def _demo(args: Namespace) -> int:
    from ..demo import demo_config, run_demo

    out = Path(args.out)
    base = load_config(args.config) if args.config else None
    cfg: RunConfig = demo_config(out, args.model, args.epochs, args.image_size, args.device, args.seed, base)
    # every other training flag as `cavga train` reads it (demo_config set the data and these)
    own = ("data.root", "data.layout", "data.category", "data.image_size", "data.seed", "model.variant")
    own += ("train.epochs", "train.device", "train.seed")
    apply_overrides(cfg, {k: v for k, v in flag_values(args).items() if k not in own})
    apply_overrides(cfg, args.overrides)
    result, checked = run_demo(out, cfg.validate(), progress=not args.no_progress)
    print_result(result)
    say_check(out / "run", checked)  # what a user without test anomalies would see
    print(f"written: {out / 'run' / 'metrics.json'}; overlays in {out / 'predictions'} and {out / 'run' / 'overlays'}")
    print(f"report: {out / 'run' / 'report' / 'index.html'} (open it in a browser)")
    return 0


def is_speed_flag(token: str) -> bool:
    """``--speed`` or an abbreviation argparse would take for it (``--sp``...)."""
    return token.startswith("--sp") and "--speed".startswith(token)


def speed(argv: list[str]) -> int:
    """`cavga benchmark --speed [options]`: the speed benchmark's own parser (cavga.speed.command)."""
    from ..speed.command import CLI_OUT, speed_main

    mixed = "the speed benchmark takes none of the training benchmark's options (--grid, --data, --models, ...)"
    rest = [t for t in argv if not is_speed_flag(t)]
    return speed_main(rest, "cavga benchmark --speed", CLI_OUT, "The speed benchmark (docs/performance.md).", mixed)


COMMANDS = {
    "train": _train,
    "evaluate": _evaluate,
    "validate": _validate,
    "redecide": _redecide,
    "predict": _predict,
    "report": _report,
    "export": _export,
    "benchmark": _benchmark,
    "demo": _demo,
}
