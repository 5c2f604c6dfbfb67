"""A tiny trained and evaluated run (seconds on a CPU), shared by the report tests."""

from pathlib import Path

from cavga.cli import main
from cavga.demo_data import generate_demo_dataset


def make_data(root: Path) -> Path:
    generate_demo_dataset(root, seed=0, n_train=12, n_test_good=4, n_test_defect=8, crop=48)
    return root


def make_evaluated_run(data: Path, out: Path, model: str = "Du") -> Path:
    args = [
        "train", "--data", str(data), "--layout", "mvtec", "--category", "brick", "--model", model,
        "--out", str(out), "--epochs", "1", "--image-size", "32", "--batch-size", "4", "--device", "cpu",
        "--no-progress", "--set", "model.base_channels=8", "--set", "model.latent_channels=8",
        "--set", "data.anomalous_fraction=0.2", "--set", "data.val_fraction=0.3",
    ]  # fmt: skip
    assert main(args) == 0
    assert main(["evaluate", str(out), "--device", "cpu", "--no-progress"]) == 0
    return out


_CACHE: dict[str, Path] = {}


def shared_run(tmp_path_factory, model: str = "Du") -> Path:
    """One evaluated run per model for the whole session (test modules must not change it)."""
    if model not in _CACHE:
        data = _CACHE.get("data") or make_data(tmp_path_factory.mktemp("report-data"))
        _CACHE["data"] = data
        _CACHE[model] = make_evaluated_run(data, tmp_path_factory.mktemp("report-run") / model, model)
    return _CACHE[model]


def shared_data(tmp_path_factory) -> Path:
    shared_run(tmp_path_factory)
    return _CACHE["data"]


def exported_and_eager(run: Path, tmp_path: Path, infer: list[str], fmt: str = "torchscript"):
    """The run's test images predicted by its export (``fmt``) and by the run itself, with ``infer``."""
    import torch

    from cavga.data import load_image
    from cavga.export import FORMATS, ExportedPredictor, export_run
    from cavga.inference import Predictor
    from cavga.runfolder import RunData

    exported = ExportedPredictor(export_run(run, tmp_path / f"m{FORMATS[fmt]}", fmt, infer))
    eager = Predictor.from_run(run, "cpu", infer)
    size = eager.cfg.data.image_size
    x = torch.stack([load_image(r.image_path, size) for r in RunData.load(run).test])  # (B, 3, S, S)
    return exported.predict_batch(x), eager.predict_batch(x)


def train_tiny(tmp_path_factory, **settings) -> Path:
    """A tiny finished CAVGA-Du run of the library's ``train`` (demo brick, 32 px, one epoch, 4 held-out
    normals), for a module's fixture; ``settings``: more config values, as ``{"train.restarts": 1}``."""
    from cavga.config import RunConfig, apply_overrides
    from cavga.train import train

    root = tmp_path_factory.mktemp("data")
    generate_demo_dataset(root, seed=0, n_train=20, n_test_good=2, n_test_defect=4, crop=48)
    cfg = RunConfig()
    cfg.data.root, cfg.data.category, cfg.data.image_size, cfg.data.val_fraction = str(root), "brick", 32, 0.2
    cfg.model.base_channels = cfg.model.latent_channels = 8
    cfg.train.epochs, cfg.train.batch_size, cfg.train.device = 1, 4, "cpu"
    apply_overrides(cfg, settings)
    run = tmp_path_factory.mktemp("run") / "run"
    train(cfg, run, progress=False)
    return run
