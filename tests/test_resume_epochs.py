"""`cavga train --resume` against the epochs a run has already trained."""

import shutil

import yaml

from _tiny_run import shared_run
from cavga.cli import main
from cavga.runtime import CHECKPOINT, load_checkpoint, save_checkpoint


def test_resuming_to_fewer_epochs_than_trained_is_refused_and_leaves_the_run_as_it_was(
    tmp_path_factory, tmp_path, capsys
):
    run = tmp_path / "run"
    shutil.copytree(shared_run(tmp_path_factory), run)
    capsys.readouterr()  # the shared run's own warnings, where this test made it
    state = load_checkpoint(run / CHECKPOINT)
    state["epoch"] = 3  # as if trained to epoch 3 (config.yaml still says 1: it must not be rewritten)
    save_checkpoint(state, run / CHECKPOINT)
    ckpt, config = (run / CHECKPOINT).read_bytes(), (run / "config.yaml").read_text()
    argv = ["train", "--out", str(run), "--resume", "--epochs", "2", "--no-progress", "--device", "cpu"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "has trained 3 epochs" in err and "--epochs 3 or more" in err, err
    assert (run / CHECKPOINT).read_bytes() == ckpt and (run / "config.yaml").read_text() == config
    assert yaml.safe_load(config)["train"]["epochs"] == 1


def test_resuming_a_finished_run_says_there_is_nothing_to_train(tmp_path_factory, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(shared_run(tmp_path_factory), run)
    assert main(["train", "--out", str(run), "--resume", "--device", "cpu"]) == 0
    assert "already trained 1 epoch; nothing to train" in capsys.readouterr().out
