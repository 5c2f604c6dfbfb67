"""train.restarts: candidate seeds trained to the first painted check, the best one trained on."""

import json

import pytest

from _painted_runs import same, scripted, small_data, tiny_config
from cavga.cli import main
from cavga.config import RunConfig
from cavga.errors import CavgaError
from cavga.restarts import candidate_dir, candidate_seeds
from cavga.runtime import CHECKPOINT, load_checkpoint
from cavga.train import train


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return small_data(tmp_path_factory.mktemp("data"))


def _cfg(root, epochs, seed=0, restarts=1):
    return tiny_config(root, epochs, every=1, seed=seed, restarts=restarts)


def test_candidate_seeds_are_disjoint_between_seeds_and_one_restart_is_the_seed():
    assert candidate_seeds(0, 2) == [0, 1] and candidate_seeds(1, 2) == [2, 3] and candidate_seeds(5, 3) == [15, 16, 17]
    assert candidate_seeds(7, 1) == [7]


def test_the_best_candidate_is_trained_on_as_the_plain_run_of_its_seed(data, tmp_path, monkeypatch):
    scripted(monkeypatch, [0.9, 0.5, 0.7])  # seed 1 alone: epochs 1, 2, 3
    plain = load_checkpoint(train(_cfg(data, 3, seed=1), tmp_path / "plain", progress=False))
    scripted(monkeypatch, [0.6, 0.9, 0.5, 0.7])  # candidates seed 0, seed 1 (epoch 1); then epochs 2, 3
    state = load_checkpoint(train(_cfg(data, 3, restarts=2), tmp_path / "run", progress=False))
    assert state["restarts"] == {"scores": {0: 0.6, 1: 0.9}, "chosen_seed": 1, "epoch": 1}
    assert state["config"]["train"]["seed"] == 0 and state["config"]["train"]["restarts"] == 2  # as asked
    assert same(state["model"], plain["model"]) and same(state["last_model"], plain["last_model"])
    assert state["epoch_choice"]["scores"] == plain["epoch_choice"]["scores"] == {1: 0.9, 2: 0.5, 3: 0.7}
    assert [r["epoch"] for r in state["history"]] == [1, 2, 3]
    for seed in (0, 1):  # each candidate is a run folder of its own, trained to the first check
        cand = load_checkpoint(candidate_dir(tmp_path / "run", seed) / CHECKPOINT)
        assert cand["epoch"] == 1 and cand["config"]["train"]["seed"] == seed


def test_ties_go_to_the_lower_seed(data, tmp_path, monkeypatch):
    scripted(monkeypatch, [0.8, 0.8])
    state = load_checkpoint(train(_cfg(data, 1, seed=1, restarts=2), tmp_path / "run", progress=False))
    assert state["restarts"]["chosen_seed"] == 2 and state["normalizer"] is not None  # seeds 2, 3; finished


def test_a_resumed_run_does_not_train_its_candidates_again(data, tmp_path, monkeypatch):
    scripted(monkeypatch, [0.6, 0.9, 0.5, 0.7])
    whole = load_checkpoint(train(_cfg(data, 3, restarts=2), tmp_path / "whole", progress=False))
    scripted(monkeypatch, [0.6, 0.9, 0.5])
    train(_cfg(data, 2, restarts=2), tmp_path / "parts", progress=False)
    scripted(monkeypatch, [0.7])  # only epoch 3 is checked: the candidates are not trained again
    parts = load_checkpoint(train(_cfg(data, 3, restarts=2), tmp_path / "parts", resume=True, progress=False))
    assert parts["restarts"] == whole["restarts"] and same(parts["model"], whole["model"])
    with pytest.raises(CavgaError, match="cannot resume with train.restarts=3"):
        train(_cfg(data, 4, restarts=3), tmp_path / "parts", resume=True, progress=False)


def test_the_cli_flag_and_bad_values(data, tmp_path):
    out = tmp_path / "run"
    args = ["train", "--data", str(data), "--layout", "mvtec", "--category", "brick", "--out", str(out)]
    args += ["--epochs", "1", "--validate-every", "1", "--restarts", "2", "--image-size", "32", "--batch-size", "4"]
    args += ["--device", "cpu", "--no-progress", "--set", "model.base_channels=8", "--set", "model.latent_channels=8"]
    assert main(args + ["--set", "data.val_fraction=0.25"]) == 0
    assert set(load_checkpoint(out / CHECKPOINT)["restarts"]["scores"]) == {0, 1}
    assert main(["evaluate", str(out), "--device", "cpu", "--no-progress"]) == 0  # the candidates' folders inside
    assert (out / "metrics.json").is_file()
    for bad in (0, "often"):
        cfg = RunConfig()
        cfg.train.restarts = bad
        with pytest.raises(CavgaError, match="train.restarts"):
            cfg.validate()
    cfg = _cfg(data, 1, restarts=2)
    cfg.train.validate_every = 0
    with pytest.raises(CavgaError, match="compared at the first painted check.*train.restarts to 1"):
        cfg.validate()


def test_the_restart_choice_script_chooses_as_training_would(tmp_path, capsys):
    """benchmarks/restart_choice.py on plain runs of seeds 0-3: base seed b tries seeds 2b and 2b+1 at the
    first check; the rule compares the chosen runs' final painted checks with all the plain runs'."""
    from _scripts import benchmark_script

    def run(name, checks, iou):
        f = tmp_path / name
        f.mkdir()
        rows = [{"epoch": e, **({"painted_pixel_auroc": v} if v is not None else {})} for e, v in checks]
        (f / "history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        keys = ("image_auroc", "pixel_auroc", "iou", "detection_accuracy")
        (f / "metrics.json").write_text(json.dumps({"metrics": {k: iou for k in keys}}))
        return f"{name[-1]}={f}"

    traj = tmp_path / "seed0.json"  # a trajectory: epoch 20 0.90, 40 0.92 (chosen)
    traj.write_text(json.dumps({"chosen_epoch": 40, "rows": [
        {"epoch": 20, "painted_pixel_auroc": 0.90, "test": {"iou": 0.1}},
        {"epoch": 40, "painted_pixel_auroc": 0.92, "test": {"iou": 0.2}}]}))  # fmt: skip
    args = ["0=" + str(traj), run("s1", [(20, 0.95), (30, None), (40, 0.94)], 0.3)]
    args += [run("s2", [(20, 0.80), (40, 0.85)], 0.4), run("s3", [(20, 0.80), (40, 0.86)], 0.5)]
    out = tmp_path / "c.json"
    assert benchmark_script("restart_choice").main([*args, "--out", str(out)]) == 0
    got = json.loads(out.read_text())
    assert got["chosen"] == {"0": 1, "1": 2}  # seed 1 beats 0 at epoch 20; 2 and 3 tie there: the lower
    assert got["final_painted_chosen"] == pytest.approx((0.95 + 0.85) / 2)
    assert got["final_painted_plain"] == pytest.approx((0.92 + 0.95 + 0.85 + 0.86) / 4)
    assert got["adopt"] is False  # 0.900 against 0.895: not more than the margin, 0.01
    assert benchmark_script("restart_choice").main([*args, "--margin", "0.004", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["adopt"] is True
    assert "test, restarts (seeds [1, 2]): image_auroc 0.350 ± 0.071" in capsys.readouterr().out
    by_k = got["expected_by_k"]  # IoU: all four seeds; image AUROC: seeds 1-3 (seed 0's trajectory has IoU only)
    assert by_k["1"]["iou"] == pytest.approx((0.2 + 0.3 + 0.4 + 0.5) / 4) and by_k["1"]["subsets"] == 4
    # the pairs {0,1} {0,2} {0,3} {1,2} {1,3} {2,3} choose 1 0 0 1 1 2 (2 and 3 tie at epoch 20: the lower seed)
    assert by_k["2"]["iou"] == pytest.approx((0.3 + 0.2 + 0.2 + 0.3 + 0.3 + 0.4) / 6)
    assert by_k["3"]["image_auroc"] == pytest.approx(0.3) and by_k["4"]["final_painted"] == pytest.approx(0.95)
    assert "image_auroc" not in by_k["4"]
    # epoch 20's checks 0.90, 0.95, 0.80, 0.80 against IoU 0.2-0.5 (seeds 0-3): ranks by hand, rho -3.5/sqrt(22.5)
    assert got["spearman_first_check"]["iou"] == pytest.approx(-3.5 / 22.5**0.5)
