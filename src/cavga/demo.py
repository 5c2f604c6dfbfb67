"""`cavga demo`: the main job on the embedded data, from nothing to metrics and overlays."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from .check import painted_check
from .config import DEMO_SETTINGS, DEMO_VARIANT_SETTINGS, RunConfig, apply_overrides, load_config, resolved, to_dict
from .demo_data import generate_demo_dataset
from .errors import CavgaError
from .evaluate import evaluate_run
from .predict import predict_to_folder
from .runfolder import RunData, completed_epochs, history_done, resume_conflicts, same_folder
from .runtime import CHECKPOINT
from .train import train

DEMO_CATEGORY = "brick"


def demo_config(
    out_dir: str | Path,
    variant: str = "Du",
    epochs: int | None = None,
    image_size: int | None = None,
    device: str | None = None,
    seed: int | None = None,
    base: RunConfig | None = None,
) -> RunConfig:
    """The demo's configuration: ``base`` (or the defaults with the demo's settings, and the variant's own
    where it has some) pointed at the demo data in ``out_dir/data``."""
    cfg = base or RunConfig()
    cfg.data.root = str(Path(out_dir) / "data")
    cfg.data.layout = "mvtec"
    cfg.data.category = DEMO_CATEGORY
    cfg.model.variant = variant
    if base is None:
        apply_overrides(cfg, {**DEMO_SETTINGS, **DEMO_VARIANT_SETTINGS.get(variant, {})})
    cfg.data.image_size = image_size or cfg.data.image_size
    cfg.train.epochs = epochs or cfg.train.epochs
    cfg.train.device = device or cfg.train.device
    if seed is not None:
        cfg.data.seed = cfg.train.seed = seed
    return cfg


def run_demo(
    out_dir: str | Path, cfg: RunConfig, progress: bool = True
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Generate the demo set into ``cfg.data.root``, train into ``out_dir/run``, run the painted-defect
    check (as ``cavga train`` ends), evaluate, and write overlays for a few test images, with their
    gallery page, to ``out_dir/predictions``.  Returns the evaluation and the check (None where
    nothing was held out). Running it again with the same settings continues (or reuses) the run
    already there; with other settings it is refused before anything is written (:func:`check_demo_rerun`)."""
    out_dir = Path(out_dir)
    run_dir = out_dir / "run"
    resume = (run_dir / CHECKPOINT).exists()
    if resume:
        print(f"{run_dir}: {check_demo_rerun(run_dir, cfg)}", flush=True)
    generate_demo_dataset(cfg.data.root, seed=cfg.data.seed, category=cfg.data.category)
    train(cfg, run_dir, resume=resume, progress=progress)
    checked = painted_check(run_dir, cfg.train.device)  # before evaluation writes the report that shows it
    result = evaluate_run(run_dir, device=cfg.train.device, progress=progress)
    test = RunData.load(run_dir).test
    picks = [r.image_path for r in test if r.label == 1][:6] + [r.image_path for r in test if r.label == 0][:2]
    predict_to_folder(run_dir, picks, out_dir / "predictions", device=cfg.train.device, report=True)
    return result, checked


def check_demo_rerun(run_dir: Path, cfg: RunConfig) -> str:
    """What a rerun of the demo does with the demo run in ``run_dir`` (continue it, or reuse it, finished),
    or a :class:`CavgaError` where that run was made with other settings: the settings a resumed run may
    not change (:func:`cavga.runfolder.check_resumable`'s rule), or fewer epochs than it has trained. A
    user who reruns the demo with another --image-size never asked to resume, so the error says what
    differs and what to do, rather than "cannot resume". The same data folder spelt otherwise (an
    absolute --out after a relative one) is the run's: ``cfg.data.root`` takes the run's spelling."""
    try:
        there = to_dict(load_config(run_dir / "config.yaml", saved=True))
    except CavgaError:  # no readable config.yaml: training decides, as for any run folder
        return "continuing the demo run already there"
    root = there["data"]["root"]
    if root and cfg.data.root and same_folder(root, cfg.data.root):
        cfg.data.root = root
    with warnings.catch_warnings():  # training resolves it again, and warns then
        warnings.simplefilter("ignore")
        now_cfg = resolved(cfg)
    asked = to_dict(cfg)  # before "auto" was resolved: a setting asked for is named before its consequences
    conflicts = resume_conflicts(there, now_cfg)
    conflicts.sort(key=lambda c: asked[c[0].partition(".")[0]][c[0].partition(".")[2]] == "auto")  # stable
    differ = [f"{dotted}={started}, not {value}" for dotted, started, value in conflicts]
    done = completed_epochs(run_dir)
    if done > now_cfg.train.epochs:
        differ.append(f"{done} epochs trained, not {now_cfg.train.epochs}")
    if differ:
        more = f"; and {len(differ) - 3} more" if len(differ) > 3 else ""
        raise CavgaError(
            f"{run_dir}: holds a demo run made with other settings ({'; '.join(differ[:3])}{more}); "
            f"give another --out, or remove {run_dir} to start the demo afresh"
        )
    if history_done(run_dir, now_cfg):
        epochs = f"{done} epoch{'s' * (done != 1)}"
        return f"reusing the finished demo run already there ({epochs} trained); evaluating it again"
    return f"continuing the demo run already there (from epoch {done} of {now_cfg.train.epochs})"
