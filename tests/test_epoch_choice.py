"""train.validate_every: training ends on the epoch whose painted check scored best."""

import json

import pytest

from _painted_runs import same, scripted, small_data, tiny_config
from _scripts import benchmark_script
from cavga.cli import main
from cavga.errors import CavgaError
from cavga.inference import Predictor
from cavga.runfolder import history_done, patience_spent
from cavga.runtime import CHECKPOINT, load_checkpoint
from cavga.train import train
from cavga.validation import validate_run


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return small_data(tmp_path_factory.mktemp("data"))


def test_the_run_ends_on_the_best_epochs_weights_and_keeps_the_last(data, tmp_path, monkeypatch):
    plain2 = load_checkpoint(train(tiny_config(data, 2), tmp_path / "plain2", progress=False))
    plain3 = load_checkpoint(train(tiny_config(data, 3), tmp_path / "plain3", progress=False))
    scripted(monkeypatch, [0.6, 0.9, 0.7])
    state = load_checkpoint(train(tiny_config(data, 3, every=1), tmp_path / "chosen", progress=False))
    assert state["epoch_choice"]["best_epoch"] == 2 and state["epoch_choice"]["scores"] == {1: 0.6, 2: 0.9, 3: 0.7}
    assert same(state["model"], plain2["model"])  # the chosen epoch's weights are the run's model
    assert same(state["last_model"], plain3["model"])  # the check left the training itself unchanged
    assert [r.get("painted_pixel_auroc") for r in state["history"]] == [0.6, 0.9, 0.7]
    # the end-of-training statistics are of the chosen weights: the same as the 2-epoch run's
    assert state["normalizer"]["map_quantiles"] == pytest.approx(plain2["normalizer"]["map_quantiles"])
    assert same(Predictor.from_run(tmp_path / "chosen", "cpu").model.state_dict(), plain2["model"])


def test_ties_go_to_the_later_epoch_and_every_n_checks_n_and_the_last(data, tmp_path, monkeypatch):
    scripted(monkeypatch, [0.8, 0.8])
    state = load_checkpoint(train(tiny_config(data, 3, every=2), tmp_path / "run", progress=False))
    assert state["epoch_choice"]["scores"] == {2: 0.8, 3: 0.8} and state["epoch_choice"]["best_epoch"] == 3
    assert "last_model" not in state  # the last epoch was chosen: nothing else to keep


def test_a_resumed_run_chooses_as_an_uninterrupted_one(data, tmp_path, monkeypatch):
    scripted(monkeypatch, [0.5, 0.9, 0.7, 0.6])
    whole = load_checkpoint(train(tiny_config(data, 4, every=1), tmp_path / "whole", progress=False))
    scripted(monkeypatch, [0.5, 0.9, 0.7, 0.6])
    train(tiny_config(data, 3, every=1), tmp_path / "parts", progress=False)  # finished at 3, epoch 2 chosen
    parts = load_checkpoint(train(tiny_config(data, 4, every=1), tmp_path / "parts", resume=True, progress=False))
    assert parts["epoch_choice"]["best_epoch"] == whole["epoch_choice"]["best_epoch"] == 2
    assert same(parts["model"], whole["model"]) and same(parts["last_model"], whole["last_model"])


def test_patience_counts_the_checks_after_the_best_ties_going_to_the_later():
    assert not patience_spent({20: 0.9, 40: 0.95, 60: 0.94}, 2)  # one check after the best
    assert patience_spent({20: 0.9, 40: 0.95, 60: 0.94, 80: 0.93}, 2)
    assert not patience_spent({20: 0.9, 40: 0.95, 60: 0.94, 80: 0.96}, 2)  # a later check climbed back
    assert not patience_spent({20: 0.95, 40: 0.94, 60: 0.95}, 2)  # a tie: the later epoch is the best
    assert not patience_spent({20: 0.9, 40: 0.8, 60: 0.7}, 0)  # 0: never stops
    assert not patience_spent({}, 1)


def test_patience_stops_the_run_where_the_full_run_would_have_ended_on(data, tmp_path, monkeypatch, capsys):
    """Checks 0.5, 0.9, 0.7, 0.6 with patience 2: training stops after epoch 4 (two checks after epoch
    2's best), on the weights the 6-epoch run without patience ends on; a resume does not train on
    unless the patience is changed."""
    scripted(monkeypatch, [0.5, 0.9, 0.7, 0.6, 0.5, 0.4])
    full = load_checkpoint(train(tiny_config(data, 6, every=1), tmp_path / "full", progress=False))
    scripted(monkeypatch, [0.5, 0.9, 0.7, 0.6])  # a fifth check would raise StopIteration
    stopped = load_checkpoint(train(tiny_config(data, 6, every=1, patience=2), tmp_path / "run", progress=False))
    assert stopped["epoch"] == 4 and len(stopped["history"]) == 4
    assert stopped["epoch_choice"]["best_epoch"] == full["epoch_choice"]["best_epoch"] == 2
    assert same(stopped["model"], full["model"])  # the weights of the same chosen epoch
    assert len((tmp_path / "run" / "history.jsonl").read_text().splitlines()) == 4
    assert Predictor.from_run(tmp_path / "run", "cpu").model is not None  # a finished run, not "stopped at 4"
    assert history_done(tmp_path / "run", tiny_config(data, 6, every=1, patience=2))  # read from the history
    assert not history_done(tmp_path / "run", tiny_config(data, 6, every=1, patience=3))
    train(tiny_config(data, 6, every=1, patience=2), tmp_path / "run", resume=True, progress=True)  # no check
    assert load_checkpoint(tmp_path / "run" / CHECKPOINT)["epoch"] == 4
    assert "stopped at epoch 4 by train.patience; --patience 0 trains on" in capsys.readouterr().out
    scripted(monkeypatch, [0.95, 0.3])
    assert main(["train", "--out", str(tmp_path / "run"), "--resume", "--patience", "0", "--no-progress"]) == 0
    more = load_checkpoint(tmp_path / "run" / CHECKPOINT)
    assert more["epoch"] == 6 and more["epoch_choice"]["best_epoch"] == 5  # patience 0: trained on


def test_the_guard_bars_epochs_whose_reconstruction_ranks_the_painted_set_backwards(data, tmp_path, monkeypatch):
    """(pixel AUROC, BCE image AUROC) per check: epoch 2 scores the map highest but its BCE has fallen
    under 0.5 from 0.95 at the first check, so epoch 1 is kept (epoch 3 scores lower); the history
    and checkpoint say why."""
    plain1 = load_checkpoint(train(tiny_config(data, 1), tmp_path / "plain1", progress=False))
    scripted(monkeypatch, [(0.80, 0.95), (0.90, 0.30), (0.70, 0.92)])
    state = load_checkpoint(train(tiny_config(data, 3, every=1), tmp_path / "run", progress=False))
    choice = state["epoch_choice"]
    assert choice["best_epoch"] == 1 and choice["barred"] == [2] and choice["bce"] == {1: 0.95, 2: 0.30, 3: 0.92}
    assert same(state["model"], plain1["model"])
    assert [r.get("painted_barred", False) for r in state["history"]] == [False, True, False]
    assert [r["painted_bce_image_auroc"] for r in state["history"]] == [0.95, 0.30, 0.92]


def test_the_guard_leaves_runs_whose_reconstruction_never_ranked_the_painted_set(data, tmp_path, monkeypatch):
    scripted(monkeypatch, [(0.80, 0.40), (0.90, 0.20)])  # the first check's BCE is under 0.9: no guard
    state = load_checkpoint(train(tiny_config(data, 2, every=1), tmp_path / "run", progress=False))
    assert state["epoch_choice"]["best_epoch"] == 2 and state["epoch_choice"]["barred"] == []


def test_a_barred_check_counts_towards_patience(data, tmp_path, monkeypatch):
    """Patience 1: the barred epoch 2 did not match epoch 1, so training stops there, on epoch 1's
    weights, and the run reads as finished from its checkpoint and from its history alone."""
    plain1 = load_checkpoint(train(tiny_config(data, 1), tmp_path / "plain1", progress=False))
    scripted(monkeypatch, [(0.80, 0.95), (0.90, 0.30)])  # a third check would raise StopIteration
    cfg = tiny_config(data, 4, every=1, patience=1)
    state = load_checkpoint(train(cfg, tmp_path / "run", progress=False))
    assert state["epoch"] == 2 and state["epoch_choice"]["best_epoch"] == 1
    assert same(state["model"], plain1["model"])
    assert history_done(tmp_path / "run", cfg) and Predictor.from_run(tmp_path / "run", "cpu").model is not None


def test_the_epoch_checks_bce_is_the_image_score_decisions(data, tmp_path):
    """epoch_check's second number is the BCE's painted image AUROC that the image score is decided on."""
    run = tmp_path / "run"
    state = load_checkpoint(train(tiny_config(data, 1, every=1), run, progress=False))
    assert state["epoch_choice"]["bce"][1] == state["image_score"]["validation_image_auroc"]["bce"]


def test_the_score_is_the_pixel_auroc_cavga_validate_reports(data, tmp_path):
    out = tmp_path / "run"
    args = ["train", "--data", str(data), "--layout", "mvtec", "--category", "brick", "--out", str(out)]
    args += ["--epochs", "2", "--validate-every", "1", "--image-size", "32", "--batch-size", "4", "--device", "cpu"]
    args += ["--no-progress", "--set", "model.base_channels=8", "--set", "model.latent_channels=8"]
    args += ["--set", "data.val_fraction=0.25"]
    assert main(args) == 0
    choice = load_checkpoint(out / CHECKPOINT)["epoch_choice"]
    assert set(choice["scores"]) == {1, 2}
    best = choice["scores"][choice["best_epoch"]]
    assert best == max(choice["scores"].values())
    assert validate_run(out, device="cpu")["metrics"]["pixel_auroc"] == pytest.approx(best, abs=1e-6)


def test_validate_every_needs_held_out_normals(data, tmp_path):
    with pytest.raises(CavgaError, match="validate_every needs held-out normal"):
        train(tiny_config(data, 1, every=1, val_fraction=0.0), tmp_path / "run", progress=False)


def test_the_trajectory_script_chooses_as_training_would(tmp_path, capsys):
    """benchmarks/epoch_trajectory.py on copies of a run at several epochs: the best painted pixel
    AUROC among multiples of --every and the last epoch, ties to the later; test numbers only shown."""
    folders = []
    for epoch, painted, test_iou in ((10, 0.99, 0.9), (20, 0.93, 0.1), (40, 0.95, 0.2), (50, 0.95, 0.3)):
        f = tmp_path / f"ep{epoch}"
        f.mkdir()
        (f / "history.jsonl").write_text("".join(json.dumps({"epoch": e + 1}) + "\n" for e in range(epoch)))
        (f / "validation.json").write_text(json.dumps({"metrics": {"pixel_auroc": painted, "iou": 0.1}}))
        metrics = {"image_auroc": 0.5, "pixel_auroc": 0.5, "iou": test_iou, "detection_accuracy": 0.5, "aupro": 0.5}
        (f / "metrics.json").write_text(json.dumps({"metrics": metrics}))
        folders.append(str(f))
    out = tmp_path / "t.json"
    assert benchmark_script("epoch_trajectory").main([*folders, "--every", "20", "--out", str(out)]) == 0
    # epoch 10 is not checked at --every 20; 40 and 50 (the last) tie: the later
    assert json.loads(out.read_text())["chosen_epoch"] == 50
    assert "| 50 (chosen) | 0.950 |" in capsys.readouterr().out


def test_the_check_cost_script_scores_as_training_checks(data, tmp_path, capsys):
    """benchmarks/epoch_check_cost.py on a finished run: the score training's last check gave."""
    run = tmp_path / "run"
    state = load_checkpoint(train(tiny_config(data, 1, every=1), run, progress=False))
    assert benchmark_script("epoch_check_cost").main([str(run)]) == 0
    printed = capsys.readouterr().out
    score = state["epoch_choice"]["scores"][1]
    assert printed.startswith("one check: ") and f"painted pixel AUROC {score:.4f}" in printed


def test_the_patience_replay_script_stops_as_training_would(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    checks = [(20, 0.93), (40, 0.94), (60, 0.92), (80, 0.95), (100, 0.90)]  # climbs back after one decline
    (run / "history.jsonl").write_text(
        "".join(json.dumps({"epoch": e, "painted_pixel_auroc": v}) + "\n" for e, v in checks)
    )
    out = tmp_path / "p.json"
    assert benchmark_script("patience_replay").main([str(run), "--patience", "1,2", "--out", str(out)]) == 0
    got = json.loads(out.read_text())
    assert got["runs"][0]["full"] == [100, 80]
    assert got["runs"][0]["patience"] == {"1": [60, 40], "2": [100, 80]}  # P=1 stops at 60 and misses epoch 80
    assert got["summary"]["1"] == {"same_epoch": 0, "runs": 1, "mean_epochs_saved": 40}
    assert "(differs)" in capsys.readouterr().out
