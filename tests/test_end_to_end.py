"""Train, evaluate and predict end to end on a tiny generated data set, through the command line."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.metrics import roc_auc_score

from cavga import train as train_module
from cavga.cli import main
from cavga.demo_data import generate_demo_dataset
from cavga.evaluate import METRIC_KEYS, native_mask
from cavga.inference import Predictor
from cavga.metrics import iou
from cavga.runfolder import RunData
from cavga.validation import validate_run


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    generate_demo_dataset(root, seed=0, n_train=12, n_test_good=4, n_test_defect=8, crop=48)
    return root


def _train_args(data, out, model, epochs=2):
    return [
        "train", "--data", str(data), "--layout", "mvtec", "--category", "brick", "--model", model,
        "--out", str(out), "--epochs", str(epochs), "--image-size", "32", "--batch-size", "4",
        "--device", "cpu", "--no-progress", "--set", "model.base_channels=8", "--set", "model.latent_channels=8",
        "--set", "data.anomalous_fraction=0.2",
    ]  # fmt: skip


def _reference_aurocs(run) -> tuple[float | None, float]:
    """(pixel AUROC, image AUROC) of a run's test split, recomputed apart from cavga.evaluate: sklearn
    on each image's map at its own size (``predict_paths``) against its mask read from disk, and on
    the raw image scores."""
    test = RunData.load(run).test
    preds = Predictor.from_run(run, "cpu").predict_paths([r.image_path for r in test])
    pix_scores, pix_labels = [], []
    for r, p in zip(test, preds, strict=True):
        if r.label == 1 and r.mask_path is None:
            continue  # no ground truth: image metrics only
        if r.label == 1:
            gt = np.asarray(Image.open(r.mask_path).convert("L")) > 127  # (H, W) at the image's own size
        else:
            gt = np.zeros(np.asarray(Image.open(r.image_path)).shape[:2], dtype=bool)
        assert p.anomaly_map.shape == gt.shape
        pix_scores.append(p.anomaly_map.ravel())
        pix_labels.append(gt.ravel())
    pix_labels = np.concatenate(pix_labels)
    pixel = roc_auc_score(pix_labels, np.concatenate(pix_scores)) if pix_labels.any() else None
    return pixel, roc_auc_score([r.label for r in test], [p.raw_score for p in preds])


@pytest.mark.parametrize("model", ["Du", "Dw"])
def test_train_evaluate_predict(tiny_data, tmp_path, model, capsys):
    run = tmp_path / "run"
    assert main(_train_args(tiny_data, run, model)) == 0
    for name in ("config.yaml", "split.json", "history.jsonl", "checkpoint.pt"):
        assert (run / name).is_file(), name
    assert len((run / "history.jsonl").read_text().splitlines()) == 2
    # training ends with `cavga validate`'s painted-defect check: the same numbers, said in one line
    said = capsys.readouterr().out
    checked = json.loads((run / "validation.json").read_text())
    assert checked["metrics"] == validate_run(run, "cpu")["metrics"]
    assert f"pixel AUROC {checked['metrics']['pixel_auroc']:.3f}" in said and "painted-defect check" in said

    split = json.loads((run / "split.json").read_text())
    test_paths = {r["image_path"] for r in split["test"]}
    if model == "Dw":  # a seeded fraction of anomalous images joins training with image labels only
        moved = [r for r in split["train"] if r["label"] == 1]
        assert moved and all(r["mask_path"] is None for r in moved)
        assert not test_paths & {r["image_path"] for r in moved}
    else:
        assert all(r["label"] == 0 for r in split["train"])
    # both variants fit the normaliser on held-out normals they never train on
    assert split["val"] and all(r["label"] == 0 for r in split["val"])
    assert not {r["image_path"] for r in split["val"]} & {r["image_path"] for r in split["train"]}

    assert main(["evaluate", str(run), "--device", "cpu", "--no-progress"]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    for key in METRIC_KEYS:
        assert key in metrics["metrics"] and key in metrics["baseline_residual"]
    assert metrics["seed"] == 0 and metrics["split"]["n_test"] == len(test_paths)
    pixel, image = _reference_aurocs(run)  # native 48 px masks, 32 px model: maps are upsampled
    assert metrics["metrics"]["pixel_auroc"] == pytest.approx(pixel, abs=1e-6)
    assert metrics["metrics"]["image_auroc"] == pytest.approx(image, abs=1e-9)  # the raw, unclipped score
    assert "image_auroc" in capsys.readouterr().out

    # inference settings change without retraining; nothing else does
    assert main(["evaluate", str(run), "--device", "cpu", "--no-progress", "--set", "infer.mask_threshold=1.0",
                 "--set", "infer.mask_quantile=null", "--set", "infer.normalizer_quantile=0.5"]) == 0  # fmt: skip
    strict = json.loads((run / "metrics.json").read_text())
    assert strict["thresholds"]["mask"] == 1.0 and strict["thresholds"]["normalizer_quantile"] == 0.5
    if model == "Du":
        assert strict["normalizer"]["hi"] <= metrics["normalizer"]["hi"]  # a lower quantile of the same scores
    assert main(["evaluate", str(run), "--set", "train.epochs=5"]) == 2

    # a mask threshold calibrated on held-out normal pixels: 1% of them may be flagged
    assert main(["evaluate", str(run), "--device", "cpu", "--no-progress", "--set", "infer.mask_quantile=0.99"]) == 0
    calibrated = json.loads((run / "metrics.json").read_text())["thresholds"]
    predictor = Predictor.from_run(run, "cpu", ["infer.mask_quantile=0.99"])
    run_data = RunData.load(run)
    held_out = [r.image_path for r in run_data.val]
    maps = np.concatenate([p.anomaly_map.ravel() for p in predictor.predict_paths(held_out)])  # own sizes
    assert calibrated["mask_quantile"] == 0.99 and calibrated["mask"] == pytest.approx(predictor.mask_threshold)
    flagged = float((maps >= predictor.mask_threshold).mean())
    assert flagged <= 0.01 + 1.0 / maps.size

    # each mask raised half way from the threshold to its map's own peak: evaluate's IoU is that of these masks
    raise_half = ["infer.mask_quantile=0.9", "infer.mask_peak_fraction=0.5"]
    assert main(["evaluate", str(run), "--device", "cpu", "--no-progress", "--set", raise_half[0],
                 "--set", raise_half[1]]) == 0  # fmt: skip
    raised = json.loads((run / "metrics.json").read_text())
    predictor = Predictor.from_run(run, "cpu", raise_half)
    assert raised["thresholds"]["mask_peak_fraction"] == 0.5 and predictor.mask_peak_fraction == 0.5
    preds, t = predictor.predict_paths([r.image_path for r in run_data.test]), predictor.mask_threshold
    level = [p.anomaly_map >= t + 0.5 * max(p.anomaly_map.max() - t, 0.0) for p in preds]  # (H, W) each, own size
    for p, m in zip(preds, level, strict=True):  # infer.mask_gate verdict: a normal verdict's answer has no mask
        assert np.array_equal(p.mask, m & bool(p.label))
    truth = [native_mask(r)[0] for r in run_data.test]
    labels = [r.label for r in run_data.test]
    # the paper's IoU reads every image's mask; iou_gated and normal_flagged_gated those the answers carry
    assert raised["metrics"]["iou"] == pytest.approx(iou(level, truth, labels), abs=1e-9)
    assert raised["metrics"]["iou_gated"] == pytest.approx(iou([p.mask for p in preds], truth, labels), abs=1e-9)
    normal = [(m.any(), p.mask.any()) for p, m, y in zip(preds, level, labels, strict=True) if y == 0]
    assert raised["metrics"]["normal_flagged"] == pytest.approx(np.mean([a for a, _ in normal]))
    assert raised["metrics"]["normal_flagged_gated"] == pytest.approx(np.mean([g for _, g in normal]))
    assert raised["thresholds"]["mask_gate"] == "verdict"

    out = tmp_path / "pred"
    folder = tiny_data / "brick" / "test" / "hole"
    assert main(["predict", str(run), str(folder), "--out", str(out), "--device", "cpu"]) == 0
    preds = json.loads((out / "predictions.json").read_text())["predictions"]
    assert len(preds) == len(list(folder.glob("*.png")))
    for p in preds:
        assert p["verdict"] in ("normal", "anomalous") and 0.0 <= p["score"] <= 1.0
        assert (out / p["overlay"]).is_file() and (out / p["mask"]).is_file()


def test_interrupted_run_resumes_to_a_working_model(tiny_data, tmp_path, monkeypatch):
    run = tmp_path / "run"
    real_step = train_module.train_step
    calls = {"n": 0}

    def crash_in_second_epoch(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:  # 3 batches an epoch: this is epoch 2
            raise KeyboardInterrupt
        return real_step(*args, **kwargs)

    monkeypatch.setattr(train_module, "train_step", crash_in_second_epoch)
    assert main(_train_args(tiny_data, run, "Du", epochs=3)) == 130
    saved = torch.load(run / "checkpoint.pt", weights_only=False)
    assert saved["epoch"] == 1 and saved["normalizer"] is None
    assert main(["evaluate", str(run), "--device", "cpu", "--no-progress"]) == 2  # unfinished: a clear error

    monkeypatch.setattr(train_module, "train_step", real_step)
    assert main(["train", "--out", str(run), "--resume", "--no-progress", "--device", "cpu"]) == 0
    saved = torch.load(run / "checkpoint.pt", weights_only=False)
    assert saved["epoch"] == 3 and saved["normalizer"] is not None
    assert [h["epoch"] for h in saved["history"]] == [1, 2, 3]
    assert len((run / "history.jsonl").read_text().splitlines()) == 3
    pred = Predictor.from_run(run, "cpu").predict_batch(torch.rand(2, 3, 32, 32))
    assert pred.anomaly_map.shape == (2, 32, 32) and torch.isfinite(pred.score).all()


def test_refuses_to_overwrite_a_run_and_reports_bad_input(tiny_data, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(_train_args(tiny_data, run, "Du", epochs=1)) == 0
    assert main(_train_args(tiny_data, run, "Du", epochs=1)) == 2
    assert "--resume" in capsys.readouterr().err
    assert main(_train_args(tmp_path / "missing", tmp_path / "r2", "Du")) == 2
    err = capsys.readouterr().err
    assert "missing" in err and err.count("\n") == 1
    assert main(["evaluate", str(tmp_path / "nothing")]) == 2


def test_benchmark_writes_one_table_for_several_variants(tiny_data, tmp_path):
    out = tmp_path / "bench"
    args = _train_args(tiny_data, out, "Du", epochs=1)
    args[0] = "benchmark"
    args[args.index("--model") : args.index("--model") + 2] = ["--models", "Du,Dw"]
    assert main(args) == 0
    results = json.loads((out / "results.json").read_text())["results"]
    assert [r["model"] for r in results] == ["CAVGA-Du", "CAVGA-Dw"]
    table = (out / "results.md").read_text()
    assert "CAVGA-Du" in table and "residual baseline" in table and "pixel_auroc" in table
    page = (out / "report.html").read_text()  # the grid's page links each run's own report page
    assert 'href="Du/report/index.html"' in page and 'href="Dw/report/index.html"' in page
    assert (out / "Du" / "report" / "index.html").is_file() and (out / "Dw" / "report" / "index.html").is_file()
    assert main([*args[:-2], "--set", "data.anomalous_fraction=0.2", "--models", "Xx"]) == 2


def test_weakly_supervised_on_a_users_folder_with_a_few_known_bad_images(tiny_data, tmp_path):
    import shutil

    root = tmp_path / "mine"
    shutil.copytree(tiny_data / "brick" / "train" / "good", root / "good")
    shutil.copytree(tiny_data / "brick" / "test" / "hole", root / "hole")  # known-bad, no masks
    run = tmp_path / "run"
    args = _train_args(root, run, "Dw", epochs=1) + ["--no-check"]
    args[args.index("mvtec")] = "folder"
    assert main(args) == 0
    assert not (run / "validation.json").exists()  # --no-check: no painted-defect check after training
    split = json.loads((run / "split.json").read_text())
    assert any(r["label"] == 1 for r in split["train"])
    assert main(["evaluate", str(run), "--device", "cpu", "--no-progress"]) == 0
    metrics = json.loads((run / "metrics.json").read_text())["metrics"]
    assert metrics["image_auroc"] == pytest.approx(_reference_aurocs(run)[1], abs=1e-9)  # C's raw probability
    assert set(metrics["undefined"]) >= {"pixel_auroc", "iou", "aupro", "f1_max"}  # no masks given


def test_images_of_different_sizes_are_scored_at_their_own_size(tiny_data, tmp_path):
    """A folder whose test images (and masks) come in two sizes and aspect ratios, like MTD's tiles."""
    root = tmp_path / "mixed"
    src = tiny_data / "brick"
    sizes = [(48, 48), (60, 36), (40, 56)]  # (width, height)
    images = sorted((src / "train" / "good").glob("*.png")) + sorted((src / "test").glob("*/*.png"))
    for i, p in enumerate(images):
        defect = "good" if p.parent.name == "good" else p.parent.name
        (root / defect).mkdir(parents=True, exist_ok=True)
        Image.open(p).resize(sizes[i % 3], Image.BILINEAR).save(root / defect / f"{i:03d}.png")
        if defect != "good":
            (root / "ground_truth" / defect).mkdir(parents=True, exist_ok=True)
            mask = Image.open(src / "ground_truth" / defect / f"{p.stem}_mask.png")
            mask.resize(sizes[i % 3], Image.NEAREST).save(root / "ground_truth" / defect / f"{i:03d}_mask.png")
    run = tmp_path / "run"
    args = _train_args(root, run, "Du", epochs=1)
    args[args.index("mvtec")] = "folder"
    assert main(args) == 0
    assert main(["evaluate", str(run), "--device", "cpu", "--no-progress"]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    test = RunData.load(run).test
    shapes = {np.asarray(Image.open(r.image_path)).shape[:2] for r in test if r.label == 1}
    assert shapes == {(48, 48), (36, 60), (56, 40)}
    pixel, image = _reference_aurocs(run)
    assert metrics["metrics"]["pixel_auroc"] == pytest.approx(pixel, abs=1e-6)
    assert metrics["metrics"]["image_auroc"] == pytest.approx(image, abs=1e-9)


def test_training_without_held_out_normals_skips_the_painted_defect_check(tiny_data, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(_train_args(tiny_data, run, "Du", epochs=1) + ["--set", "data.val_fraction=0"]) == 0
    assert "painted-defect check skipped: the run held out no normal images" in capsys.readouterr().out
    assert not (run / "validation.json").exists()


def test_demo_command_runs_end_to_end_and_ends_with_the_painted_defect_check(tmp_path, capsys):
    """`cavga demo`, shrunk to seconds (the README's first command runs it at full size)."""
    out = tmp_path / "demo"
    args = ["demo", "--out", str(out), "--epochs", "1", "--image-size", "32", "--batch-size", "16", "--no-progress",
            "--set", "model.base_channels=8", "--set", "model.latent_channels=8"]  # fmt: skip
    assert main(args) == 0
    said = capsys.readouterr().out
    metrics = json.loads((out / "run" / "metrics.json").read_text())["metrics"]
    assert f"| CAVGA-Du | {metrics['image_auroc']:.3f} | {metrics['pixel_auroc']:.3f} |" in said
    checked = json.loads((out / "run" / "validation.json").read_text())["metrics"]
    assert "painted-defect check (held-out normals" in said and f"pixel AUROC {checked['pixel_auroc']:.3f}" in said
    assert (out / "run" / "report" / "index.html").is_file() and (out / "predictions" / "predictions.json").is_file()
    # the check ran before the report was written, so the page shows it beside the test metrics
    assert 'class="painted"' in (out / "run" / "report" / "index.html").read_text()


@pytest.mark.gpu
def test_a_resumed_cuda_run_continues_the_gpus_noise_as_an_uninterrupted_one(tiny_data, tmp_path):
    """On a GPU the reparameterisation draws from the device's generator: the checkpoint carries its
    state, so 1 epoch then --resume to 2 ends on the weights of 2 epochs at once (deterministic kernels)."""
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")

    def args(out, epochs):
        cuda = [a if a != "cpu" else "cuda" for a in _train_args(tiny_data, out, "Du", epochs)]
        return [*cuda, "--no-check", "--set", "train.deterministic=true"]

    assert main(args(tmp_path / "whole", 2)) == 0
    assert main(args(tmp_path / "parts", 1)) == 0
    assert "cuda_rng" in torch.load(tmp_path / "parts" / "checkpoint.pt", weights_only=True)
    assert main(["train", "--out", str(tmp_path / "parts"), "--resume", "--epochs", "2", "--no-progress"]) == 0
    whole, parts = (torch.load(tmp_path / r / "checkpoint.pt", weights_only=True)["model"] for r in ("whole", "parts"))
    assert all(torch.equal(whole[k], parts[k]) for k in whole)
