"""`cavga demo`: the main job on the embedded data, from nothing to metrics and overlays."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .config import DEMO_SETTINGS, DEMO_VARIANT_SETTINGS, RunConfig, apply_overrides
from .demo_data import generate_demo_dataset
from .evaluate import evaluate_run
from .predict import predict_to_folder
from .runfolder import RunData
from .runtime import CHECKPOINT
from .train import train
from .validation import painted_check

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
    nothing was held out). Running it again resumes or reuses."""
    out_dir = Path(out_dir)
    generate_demo_dataset(cfg.data.root, seed=cfg.data.seed, category=cfg.data.category)
    run_dir = out_dir / "run"
    train(cfg, run_dir, resume=(run_dir / CHECKPOINT).exists(), progress=progress)
    checked = painted_check(run_dir, cfg.train.device)  # before evaluation writes the report that shows it
    result = evaluate_run(run_dir, device=cfg.train.device, progress=progress)
    test = RunData.load(run_dir).test
    picks = [r.image_path for r in test if r.label == 1][:6] + [r.image_path for r in test if r.label == 0][:2]
    predict_to_folder(run_dir, picks, out_dir / "predictions", device=cfg.train.device, report=True)
    return result, checked
