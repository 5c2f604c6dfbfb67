"""`cavga redecide` refuses a run whose training's end did not run, reads the run (under its lock)
before copying it, prints every decided setting and a quoted `validate` only where it can run, and
leaves no work folder behind on SIGTERM."""

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from _tiny_run import train_tiny
from cavga.cli import main
from cavga.errors import CavgaError
from cavga.fingerprint import check_run_folder
from cavga.map_choice import AUTO_SETTINGS
from cavga.normal_level import LEVEL_KEY
from cavga.redecide import DECISIONS, redecide_in_place, redecide_run
from cavga.runfolder import SPLIT_FILE
from cavga.runlock import LOCK_FILE, RunLock
from cavga.runtime import CHECKPOINT, load_checkpoint, save_checkpoint

SRC = str(Path(__file__).parents[1] / "src")


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A tiny finished CAVGA-Du run, not to be changed: tests copy it."""
    return train_tiny(tmp_path_factory, **{"model.encoder_init": "dcgan", "train.restarts": 1})


def _copy(run: Path, to: Path) -> Path:
    shutil.copytree(run, to, ignore=shutil.ignore_patterns(LOCK_FILE))
    return to


def test_a_run_killed_in_trainings_end_is_refused_until_resumed(trained, tmp_path):
    """Killed after its last epoch's checkpoint but before training's end (no normaliser, no decided
    setting, the last epoch's weights), a run is refused by both redecide paths, with a message whose
    command finishes it; after that command, redecide works."""
    run = _copy(trained, tmp_path / "killed é 9")
    state = load_checkpoint(run / CHECKPOINT)
    for key in (*AUTO_SETTINGS, "residual_mask", LEVEL_KEY, "last_model"):
        state.pop(key, None)
    state["normalizer"] = None  # as train._state writes it before training's end
    save_checkpoint(state, run / CHECKPOINT)
    check_run_folder(run, load_checkpoint(run / CHECKPOINT))  # the fingerprints still hold: not that refusal
    said = f"{run}: training's end did not run (stopped at epoch 1 of 1); finish it with `cavga train --out {shlex.quote(str(run))} --resume`"  # noqa: E501
    with pytest.raises(CavgaError, match=re.escape(said)):
        redecide_run(run, tmp_path / "out", [], "cpu")
    assert not (tmp_path / "out").exists() and sorted(p.name for p in tmp_path.iterdir()) == [run.name]
    with pytest.raises(CavgaError, match=re.escape(said)):  # a grid's rerun with another infer setting
        redecide_in_place(run, ["infer.map_blur=0"], "cpu")
    assert load_checkpoint(run / CHECKPOINT)["normalizer"] is None  # unchanged
    assert main(["train", "--out", str(run), "--resume", "--no-progress", "--no-check", "--device", "cpu"]) == 0
    assert load_checkpoint(run / CHECKPOINT)["normalizer"] is not None  # the advice ran training's end
    assert redecide_run(run, tmp_path / "out", [], "cpu")


def test_errors_of_the_run_name_the_run_not_its_copy(trained, tmp_path):
    run = _copy(trained, tmp_path / "run")
    (run / SPLIT_FILE).unlink()
    outs = tmp_path / "outs"
    with pytest.raises(CavgaError, match=f"^{re.escape(str(run / SPLIT_FILE))}: missing"):
        redecide_run(run, outs / "copy", [], "cpu")
    assert not outs.exists() or not list(outs.iterdir())  # no work folder left beside OUT


def test_a_run_in_use_is_refused_by_its_lock(trained, tmp_path):
    """A run still training (its lock held) is refused as busy, not as unfinished; OUT gets no lock file."""
    run = _copy(trained, tmp_path / "run")
    with RunLock(run, "train"), pytest.raises(CavgaError, match=rf"^{re.escape(str(run))}: in use by pid \d+"):
        redecide_run(run, tmp_path / "out", [], "cpu")
    assert not (tmp_path / "out").exists()


def test_cli_prints_every_decision_and_a_quoted_validate(trained, tmp_path, capsys):
    out = tmp_path / "sharp copy é"
    assert main(["redecide", str(trained), str(out), "--device", "cpu"]) == 0
    said = capsys.readouterr().out
    state = load_checkpoint(out / CHECKPOINT)
    decided = [key for key in DECISIONS if state.get(key)]
    assert "shifted_map" in decided  # the tiny run's default decides it
    for key in decided:
        assert f"{key}: {state[key][key]} (" in said
    assert f"written: {out} (check it with `cavga validate {shlex.quote(str(out))}`)" in said
    assert LOCK_FILE not in {p.name for p in out.iterdir()}


def test_cli_suggests_no_validate_without_held_out_normals(trained, tmp_path, capsys, monkeypatch):
    """Where OUT holds no held-out normal image `cavga validate` would refuse it: say why instead."""
    import cavga.redecide

    def copy_without_held_out(run_dir, out_dir, infer, device):
        _copy(Path(run_dir), Path(out_dir))
        split = json.loads((Path(out_dir) / SPLIT_FILE).read_text())
        split["train"] += split["val"]
        split["val"] = []
        (Path(out_dir) / SPLIT_FILE).write_text(json.dumps(split))
        return {}

    monkeypatch.setattr(cavga.redecide, "redecide_run", copy_without_held_out)
    out = tmp_path / "out"
    assert main(["redecide", str(trained), str(out), "--device", "cpu"]) == 0
    said = capsys.readouterr().out
    assert "cavga validate" not in said
    assert f"written: {out} (no painted-defect check: it held out no normal images: " in said


def test_sigterm_removes_the_work_folder(trained, tmp_path):
    outs = tmp_path / "outs"
    outs.mkdir()
    code = "import sys; from cavga.cli import main; sys.exit(main(sys.argv[1:]))"
    argv = ["redecide", str(trained), str(outs / "copy"), "--device", "cpu"]
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
    child = subprocess.Popen([sys.executable, "-c", code, *argv], env=env, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not list(outs.glob(".copy.*")) and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert list(outs.glob(".copy.*")), "the work folder never appeared"
        child.send_signal(signal.SIGTERM)
        assert child.wait(timeout=60) == 128 + signal.SIGTERM
    finally:
        child.kill()
        child.wait()
    assert not list(outs.iterdir())
