"""A catalogue of bad inputs (issue 9, "Reliability and security"): one test per item, each named
after its severity and number. Every test failed before its fix."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from _errors import one_line_error
from cavga import runfolder
from cavga import step as step_module
from cavga import train as train_module
from cavga.cli import main
from cavga.config import DataConfig, RunConfig
from cavga.data import load_mask
from cavga.demo_data import generate_demo_dataset
from cavga.errors import CavgaError
from cavga.io_utils import atomic_write_text
from cavga.predict import predict_to_folder
from cavga.runlock import LOCK_FILE, RunLock
from cavga.runtime import CHECKPOINT, load_checkpoint, save_checkpoint
from cavga.visualize import heatmap_overlay, save_png

SRC = str(Path(__file__).resolve().parents[1] / "src")


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    generate_demo_dataset(root, seed=0, n_train=12, n_test_good=2, n_test_defect=4, crop=48)
    return root


def _train_args(data, out, model="Du", epochs=1, *extra):
    return [
        "train", "--data", str(data), "--layout", "mvtec", "--category", "brick", "--model", model,
        "--out", str(out), "--epochs", str(epochs), "--image-size", "32", "--batch-size", "4",
        "--device", "cpu", "--no-progress", "--set", "model.base_channels=8", "--set", "model.latent_channels=8",
        "--set", "data.anomalous_fraction=0.2", *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def trained(tiny_data, tmp_path_factory):
    """Two finished one-epoch runs (Du and Dw) to copy and spoil."""
    base = tmp_path_factory.mktemp("runs")
    for model in ("Du", "Dw"):
        assert main(_train_args(tiny_data, base / model, model)) == 0
    return base


def _copy_run(trained, tmp_path, model="Du") -> Path:
    run = tmp_path / f"run-{model}"
    shutil.copytree(trained / model, run)
    return run


# ---------------------------------------------------------------------------------------------- High


def test_high1_crafted_checkpoint_runs_no_code(trained, tiny_data, tmp_path, capsys):
    """High 1: a checkpoint whose pickle calls os.system runs nothing (evaluate, predict, --resume,
    and the read-back in save_checkpoint); a one-line error names the file."""
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    run = _copy_run(trained, tmp_path)
    ckpt = run / "checkpoint.pt"
    good = torch.load(ckpt, weights_only=True)
    torch.save({**good, "payload": Evil()}, ckpt)
    images = tiny_data / "brick" / "test" / "hole"
    for argv in (
        ["evaluate", str(run), "--device", "cpu", "--no-progress"],
        ["predict", str(run), str(images), "--out", str(tmp_path / "pred"), "--device", "cpu"],
        ["train", "--out", str(run), "--resume", "--no-progress", "--device", "cpu", "--epochs", "2"],
    ):
        assert main(argv) == 2, argv
        one_line_error(capsys, ckpt, "could run code")
        assert not marker.exists(), argv

    shutil.copy(trained / "Du" / "checkpoint.pt", ckpt)
    with pytest.raises(Exception):  # noqa: B017 - the read-back refuses the object before it replaces the file
        save_checkpoint({**good, "payload": Evil()}, ckpt)
    assert not marker.exists() and load_checkpoint(ckpt)["epoch"] == good["epoch"]


def test_high2_second_writer_is_refused_naming_the_holder(tiny_data, tmp_path, capsys):
    """High 2: while a process holds a run folder, a second `train` into it is a one-line error
    naming the holder; once the holder is killed (-9) its lock is taken over."""
    run = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", f"from cavga.runlock import RunLock; l = RunLock({str(run)!r}, 'train'); "
         "l.acquire(); print('locked', flush=True); import time; time.sleep(60)"],
        env={**os.environ, "PYTHONPATH": SRC}, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert main(_train_args(tiny_data, run)) == 2
        one_line_error(capsys, run, f"pid {holder.pid}")
        assert not (run / "config.yaml").exists()
        assert main(["evaluate", str(run), "--device", "cpu"]) == 2  # evaluate writes too: also refused
        one_line_error(capsys, f"pid {holder.pid}")
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert main(_train_args(tiny_data, run)) == 0  # the dead holder's lock is taken over
    assert f"pid {holder.pid}" in capsys.readouterr().err  # with a warning that says so
    assert (run / "checkpoint.pt").is_file() and (run / LOCK_FILE).read_text() == ""  # released


def test_high2_stale_lock_file_of_a_dead_process_is_taken_over(tiny_data, tmp_path, capsys):
    """High 2: a lock file left behind by a process that no longer exists does not block the run."""
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    run = tmp_path / "run"
    run.mkdir()
    (run / LOCK_FILE).write_text(json.dumps({"pid": pid, "host": os.uname().nodename, "command": "cavga train"}))
    assert main(_train_args(tiny_data, run)) == 0
    assert f"taking over the lock left by pid {pid}" in capsys.readouterr().err
    with RunLock(run, "evaluate"):  # released at the end, and lockable again
        assert json.loads((run / LOCK_FILE).read_text())["pid"] == os.getpid()


def test_high2_mixed_run_folder_is_refused(trained, tiny_data, tmp_path, capsys):
    """High 2: a folder holding one run's config and split and another run's checkpoint is refused
    by evaluate and predict (the checkpoint's config/split fingerprint disagrees)."""
    run = _copy_run(trained, tmp_path, "Du")
    shutil.copy(trained / "Dw" / "checkpoint.pt", run / "checkpoint.pt")
    assert main(["evaluate", str(run), "--device", "cpu", "--no-progress"]) == 2
    one_line_error(capsys, "config.yaml", "mixes two runs")
    images = tiny_data / "brick" / "test" / "hole"
    assert main(["predict", str(run), str(images), "--out", str(tmp_path / "p"), "--device", "cpu"]) == 2
    one_line_error(capsys, "mixes two runs")

    run = _copy_run(trained, tmp_path, "Dw")  # same config, another split
    split = json.loads((run / "split.json").read_text())
    split["test"] = split["test"][1:]
    (run / "split.json").write_text(json.dumps(split))
    assert main(["evaluate", str(run), "--device", "cpu", "--no-progress"]) == 2
    one_line_error(capsys, "split.json", "mixes two runs")


# -------------------------------------------------------------------------------------------- Medium


def test_medium3_predict_never_overwrites_or_rereads(trained, tiny_data, tmp_path):
    """Medium 3: `predict RUN same --out same` with a.png and a_mask.png keeps both files, and a
    second run does not read the first run's outputs as inputs."""
    run = _copy_run(trained, tmp_path)
    same = tmp_path / "same"
    same.mkdir()
    shutil.copy(next((tiny_data / "brick" / "test" / "hole").glob("*.png")), same / "a.png")
    shutil.copy(next((tiny_data / "brick" / "test" / "good").glob("*.png")), same / "a_mask.png")
    before = {p.name: p.read_bytes() for p in same.iterdir()}
    for i in range(3):
        inputs = [str(same)] if i < 2 else sorted(map(str, same.glob("*.png")))  # the third: a shell glob
        assert main(["predict", str(run), *inputs, "--out", str(same), "--device", "cpu"]) == 0
        for name, data in before.items():
            assert (same / name).read_bytes() == data, name
        preds = json.loads((same / "predictions.json").read_text())["predictions"]
        assert sorted(Path(p["path"]).name for p in preds) == ["a.png", "a_mask.png"]
        outputs = {p[k] for p in preds for k in ("overlay", "mask")}
        assert len(outputs) == 4 and not outputs & set(before)


def test_medium4_resume_refuses_conflicting_flags(trained, tmp_path, capsys):
    """Medium 4: `train --resume` with a flag that disagrees with the saved run is an error naming it."""
    run = _copy_run(trained, tmp_path)
    for flag, value in (("--image-size", "64"), ("--lr", "0.1"), ("--model", "Dw"), ("--batch-size", "2")):
        argv = ["train", "--out", str(run), "--resume", "--no-progress", "--device", "cpu", flag, value]
        assert main(argv) == 2, flag
        one_line_error(capsys, flag, "conflicts")
    for key in ("train.augment=dihedral", "train.validate_every=1", "loss.w_ae=1"):  # a --set is held to it too
        argv = ["train", "--out", str(run), "--resume", "--no-progress", "--device", "cpu", "--set", key]
        assert main(argv) == 2, key
        one_line_error(capsys, "cannot resume with " + key.partition("=")[0], "the run was started with")
    same = ["train", "--out", str(run), "--resume", "--no-progress", "--device", "cpu", "--image-size", "32"]
    assert main(same) == 0  # agreeing flags and the ones a resume may change are fine


def test_a_run_saved_before_a_config_key_existed_resumes(trained, tmp_path, capsys):
    """A run whose checkpoint and config.yaml predate a configuration key (here data.resize) resumes:
    the missing key takes its default, it is not read as a conflicting change."""
    run = _copy_run(trained, tmp_path)
    state = load_checkpoint(run / CHECKPOINT)
    del state["config"]["data"]["resize"]
    save_checkpoint(state, run / CHECKPOINT)
    saved = yaml.safe_load((run / "config.yaml").read_text())
    del saved["data"]["resize"]
    (run / "config.yaml").write_text(yaml.safe_dump(saved))
    argv = ["train", "--out", str(run), "--resume", "--epochs", "2", "--no-progress", "--device", "cpu"]
    assert main(argv) == 0, capsys.readouterr().err
    assert load_checkpoint(run / CHECKPOINT)["epoch"] == 2


def test_medium5_empty_test_split_is_said_at_training_and_by_evaluate(tiny_data, tmp_path, capsys):
    """Medium 5: a folder-layout data set of good images only: training warns that there are no test
    images, and evaluate says so in one line (not a torch.cat traceback)."""
    root = tmp_path / "mine"
    shutil.copytree(tiny_data / "brick" / "train" / "good", root / "good")
    args = _train_args(root, tmp_path / "run", "Du", 1, "--set", "data.train_fraction=1.0")
    args[args.index("mvtec")] = "folder"
    assert main(args) == 0
    assert "no test images" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path / "run"), "--device", "cpu", "--no-progress"]) == 2
    one_line_error(capsys, "split.json", "test split is empty")


def test_medium6_one_broken_image_does_not_stop_predict(trained, tiny_data, tmp_path, capsys, monkeypatch):
    """Medium 6: predict reports an unreadable image in one line, writes the good ones, ends with a
    count and a non-zero exit."""
    run = _copy_run(trained, tmp_path)
    images = tmp_path / "in"
    images.mkdir()
    for name, sub in (("a.png", "good"), ("b.png", "hole")):
        shutil.copy(next((tiny_data / "brick" / "test" / sub).glob("*.png")), images / name)
    (images / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    out = tmp_path / "out"
    assert main(["predict", str(run), str(images), "--out", str(out), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert sum("broken.png" in ln for ln in err.splitlines()) == 1
    assert "1 of 3 images could not be read" in err
    result = json.loads((out / "predictions.json").read_text())
    assert [Path(r["path"]).name for r in result["predictions"]] == ["a.png", "b.png"]
    assert [Path(r["path"]).name for r in result["failed"]] == ["broken.png"]
    assert all((out / r["overlay"]).is_file() for r in result["predictions"])

    # results are written as it goes (one batch at a time), not after every image has been scored
    import cavga.data

    calls = []

    def recording(real):
        def load(path, image_size, *args):
            calls.append((Path(path).name, image_size, len(list((tmp_path / "out2").glob("*_overlay.png")))))
            return real(path, image_size, *args)

        return load

    for name in ("load_image", "read_image"):
        monkeypatch.setattr(cavga.data, name, recording(getattr(cavga.data, name)))
    (images / "broken.png").unlink()
    predict_to_folder(run, [images], tmp_path / "out2", "cpu", ["infer.batch_size=1"])
    assert calls == [("a.png", 32, 0), ("a.png", None, 0), ("b.png", 32, 1), ("b.png", None, 1)]


def test_medium7_uncreatable_output_path_fails_before_any_work(trained, tiny_data, tmp_path, capsys, monkeypatch):
    """Medium 7: `--out some_file/sub` for train and predict is a one-line error before any work."""
    blocker = tmp_path / "some_file"
    blocker.write_text("x")
    monkeypatch.setattr(runfolder, "prepare_data", lambda cfg: pytest.fail("read the data first"))
    assert main(_train_args(tiny_data, blocker / "sub")) == 2
    one_line_error(capsys, "some_file", "is a file")
    images = tiny_data / "brick" / "test" / "hole"
    argv = ["predict", str(trained / "Du"), str(images), "--out", str(blocker / "sub"), "--device", "cpu"]
    assert main(argv) == 2
    one_line_error(capsys, "some_file", "is a file")


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        (["--set", "infer.batch_size=0"], "infer.batch_size"),
        (["--lr", "-1"], "train.lr"),
        (["--set", "train.lr=.nan"], "train.lr"),
        (["--set", "train.beta1=2"], "train.beta1"),
        (["--set", "train.num_workers=-1"], "train.num_workers"),
        (["--device", "mps"], "mps"),
    ],
)
def test_medium8_values_only_torch_checked_fail_before_the_run(tiny_data, tmp_path, capsys, extra, named):
    """Medium 8: out-of-range values are one-line errors before training, and leave no run folder."""
    if named == "mps" and torch.backends.mps.is_available():
        pytest.skip("this machine has MPS")
    run = tmp_path / "run"
    assert main([*_train_args(tiny_data, run), *extra]) == 2
    one_line_error(capsys, named)
    assert not run.exists()


def test_medium8_a_run_that_fails_under_its_lock_leaves_no_folders(tiny_data, tmp_path, capsys):
    """Medium 8: a start that fails after taking the lock removes every folder the lock created."""
    run = tmp_path / "new" / "run"
    args = _train_args(tiny_data, run)
    args[args.index("--data") + 1] = str(tmp_path / "no-such-data")
    assert main(args) == 2
    one_line_error(capsys, "no-such-data")
    assert not (tmp_path / "new").exists()


# ----------------------------------------------------------------------------------------------- Low


def test_low9_malformed_files_and_values_are_one_line_errors(trained, tiny_data, tmp_path, capsys):
    """Low 9: malformed YAML in --set, a binary or folder --config, a checkpoint that is not a dict
    or lacks its config, a split.json that is a list or has an empty test list."""
    assert main(_train_args(tiny_data, tmp_path / "r", "Du", 1, "--set", "train.lr=[1,")) == 2
    one_line_error(capsys, "train.lr=[1,", "not valid YAML")
    binary = tmp_path / "c.yaml"
    binary.write_bytes(bytes(range(256)))
    for config, words in ((binary, "not a text file"), (tmp_path, "is a folder")):
        assert main([*_train_args(tiny_data, tmp_path / "r"), "--config", str(config)]) == 2
        one_line_error(capsys, config, words)

    evaluate = ["evaluate", "--device", "cpu", "--no-progress"]
    for state, words in (([1, 2, 3], "not a dict"), ({"model": {}, "epoch": 1}, "no config")):
        run = _copy_run(trained, tmp_path / str(len(words)))
        torch.save(state, run / "checkpoint.pt")
        assert main([*evaluate, str(run)]) == 2
        one_line_error(capsys, "checkpoint.pt", words)

    for n, (split, words) in enumerate((([], "not a cavga split file"), (None, "test split is empty"))):
        run = _copy_run(trained, tmp_path / f"s{n}")
        raw = json.loads((run / "split.json").read_text())
        if split is None:
            raw["test"] = []
            split = raw
            ckpt = torch.load(run / "checkpoint.pt", weights_only=True)  # a consistent folder, just empty
            ckpt["fingerprint"] = None
            torch.save(ckpt, run / "checkpoint.pt")
        (run / "split.json").write_text(json.dumps(split))
        assert main([*evaluate, str(run)]) == 2
        one_line_error(capsys, "split.json", words)


def test_low10_stale_temp_files_of_a_killed_save_are_removed(trained, tmp_path):
    """Low 10: `.checkpoint.pt.*.tmp` files that a kill -9 during a save left are removed when the
    run starts again."""
    run = _copy_run(trained, tmp_path)
    stale = run / ".checkpoint.pt.deadbeef.tmp"
    stale.write_bytes(b"\0" * 1024)
    assert main(["train", "--out", str(run), "--resume", "--no-progress", "--device", "cpu"]) == 0
    assert not stale.exists() and not list(run.glob(".*.tmp"))


def test_low11_outputs_get_the_umask_permissions(tmp_path):
    """Low 11: files written atomically have the permissions of the user's umask, not 0600."""
    old = os.umask(0o022)
    try:
        text = atomic_write_text(tmp_path / "a.txt", "x")
        png = save_png(Image.new("RGB", (2, 2)), tmp_path / "a.png")
    finally:
        os.umask(old)
    assert (text.stat().st_mode & 0o777) == 0o644 and (png.stat().st_mode & 0o777) == 0o644


def test_low12_overlay_of_a_very_thin_image_is_not_transposed():
    """Low 12: a 1-pixel-wide or 1-pixel-high image keeps its shape in the overlay (no axis guessing)."""
    for h, w in ((50, 1), (1, 50), (3, 50), (50, 3)):
        img = heatmap_overlay(torch.rand(3, h, w), np.zeros((h, w), np.float32))
        assert img.size == (w, h), (h, w)
        img = heatmap_overlay(np.full((h, w, 3), 0.5), np.zeros((h, w), np.float32))
        assert img.size == (w, h), (h, w)


def test_low13_mask_rule_and_corrupt_training_image(tiny_data, tmp_path, capsys, monkeypatch):
    """Low 13: 0/1 masks read as defect (with a warning), 16-bit masks are thresholded at half the
    type's range, and a corrupt training image stops training before the first epoch."""
    a = np.zeros((8, 8), np.uint8)
    a[2:4, 2:4] = 1
    Image.fromarray(a).save(tmp_path / "m01.png")
    monkeypatch.setattr("cavga.data.images._warned_01_mask", False)  # warned once per process
    with pytest.warns(UserWarning, match="0 and 1"):
        assert load_mask(tmp_path / "m01.png", None).sum() == 4
    soft = np.tile(np.arange(0, 201, 25, dtype=np.uint16), (9, 1))  # 16-bit, soft, all far below 32768
    Image.fromarray(soft).save(tmp_path / "m16.png")
    assert load_mask(tmp_path / "m16.png", None).sum() == 0
    Image.fromarray(soft * 300).save(tmp_path / "m16b.png")  # up to 60000: above half where > 32767.5
    assert load_mask(tmp_path / "m16b.png", None)[0, 0].tolist() == [v * 300 > 32767.5 for v in soft[0]]

    root = tmp_path / "data"
    shutil.copytree(tiny_data / "brick", root / "brick")
    bad = sorted((root / "brick" / "train" / "good").glob("*.png"))[-1]
    bad.write_bytes(bad.read_bytes()[:100])  # truncated
    assert main(_train_args(root, tmp_path / "run", "Du", 1, "--batch-size", "5")) == 2
    one_line_error(capsys, bad.name, "cannot read image")
    assert not (tmp_path / "run").exists()


def test_low14_broken_symlink_and_one_line_warnings(trained, tiny_data, tmp_path, capsys):
    """Low 14: a dangling symlink is called one (not an "unexpected folder"); warnings print as one
    line without Python source; predict names the non-image files it skips."""
    images = tmp_path / "in"
    images.mkdir()
    shutil.copy(next((tiny_data / "brick" / "test" / "hole").glob("*.png")), images / "a.png")
    (images / "notes.txt").write_text("hi")
    argv = ["predict", str(trained / "Du"), str(images), "--out", str(tmp_path / "out"), "--device", "cpu"]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "cavga: warning:" in err and "notes.txt: not an image file" in err
    assert "warnings.warn" not in err and err.count("\n") == 1

    root = tmp_path / "mine"
    shutil.copytree(tiny_data / "brick" / "train" / "good", root / "good")
    (root / "good" / "zz.png").symlink_to(tmp_path / "nowhere.png")
    from cavga.data import folder_split

    with pytest.warns(UserWarning, match="broken symbolic link"):
        folder_split(root)


def test_low14_fraction_message_and_resume_without_run(trained, tmp_path, capsys):
    """Low 14: data.train_fraction's allowed range is (0, 1] as documented; --resume with the
    checkpoint deleted, or on a missing folder, says so instead of starting again or asking for --data."""
    with pytest.raises(CavgaError, match=r"data.train_fraction: 0.0 is outside \(0, 1\]"):
        RunConfig(data=DataConfig(train_fraction=0.0)).validate()
    RunConfig(data=DataConfig(train_fraction=1.0)).validate()

    run = _copy_run(trained, tmp_path)
    (run / "checkpoint.pt").unlink()
    assert main(["train", "--out", str(run), "--resume", "--no-progress", "--device", "cpu"]) == 2
    one_line_error(capsys, "checkpoint.pt", "missing")
    assert main(["train", "--out", str(tmp_path / "nothing"), "--resume"]) == 2
    line = one_line_error(capsys, "nothing", "no run to resume")
    assert "folder not found" in line
    (tmp_path / "stopped" / "restarts" / "seed0").mkdir(parents=True)  # stopped while candidates trained
    assert main(["train", "--out", str(tmp_path / "stopped"), "--resume"]) == 2
    line = one_line_error(capsys, "stopped", "only restart candidates")
    assert "rerun the command that started it" in line


# ---------------------------------------------------------------------------------------------- Also


def test_also_nan_loss_stops_the_run_and_keeps_the_checkpoint(tiny_data, tmp_path, capsys, monkeypatch):
    """Also: a NaN loss stops the run naming epoch, step and term; the last good checkpoint stays
    intact and holds no NaN."""
    real_step = train_module.train_step
    calls = {"n": 0}

    def nan_in_epoch_two(*args, **kwargs):
        losses = real_step(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 4:  # 2 batches an epoch (11 images in batches of 4): epoch 2, step 2
            losses["rec"] = float("nan")
        return losses

    monkeypatch.setattr(train_module, "train_step", nan_in_epoch_two)
    run = tmp_path / "run"
    assert main(_train_args(tiny_data, run, "Du", 3)) == 2
    one_line_error(capsys, "epoch 2", "step 2", "rec=nan")
    state = load_checkpoint(run / "checkpoint.pt")
    assert state["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_also_a_nan_loss_that_reaches_the_weights_between_reads_is_named(tiny_data, tmp_path, capsys, monkeypatch):
    """Also: a NaN loss read only later (losses are read every LOG_EVERY steps) has already made the
    weights NaN, and the next step's BCE fails on the NaN reconstruction: the run still stops with the
    one-line divergence message naming the NaN step, and says which checkpoint it kept (here none:
    train.checkpoint_every 2 had not saved epoch 1)."""
    real_loss = step_module.reconstruction_loss
    calls = {"n": 0}

    def nan_from_epoch_two(*args, **kwargs):
        calls["n"] += 1
        loss = real_loss(*args, **kwargs)
        return loss * float("nan") if calls["n"] == 3 else loss  # epoch 2, step 1: a real NaN, backpropagated

    monkeypatch.setattr(step_module, "reconstruction_loss", nan_from_epoch_two)
    run = tmp_path / "run"
    argv = _train_args(tiny_data, run, "Du", 3, "--set", "train.checkpoint_every=2", "--no-check")
    assert main(argv) == 2
    line = one_line_error(capsys, "epoch 2", "step 1", "rec=nan")
    assert "no checkpoint was written" in line
    assert not (run / "checkpoint.pt").exists()


def _adam_steps(state) -> int:
    return int(max(float(s["step"]) for s in state["opt_g"]["state"].values()))


def test_also_interrupted_ten_times_resumes_to_the_same_run(tiny_data, tmp_path, monkeypatch):
    """Also (fast fault injection): ten interruptions at random points, inside an epoch and inside a
    checkpoint save, each followed by --resume: the run ends at the requested epoch with as many
    optimiser steps as an uninterrupted run, and its checkpoint loads."""
    epochs, steps_per_epoch = 6, 2  # 12 training images - 1 held out, in batches of 4, drop_last
    rng = np.random.default_rng(0)
    real_step, real_save = train_module.train_step, torch.save
    budget = {"steps": -1, "saves": -1}  # interrupt at the n-th step or save from now; -1: never

    def step(*args, **kwargs):
        budget["steps"] -= 1
        if budget["steps"] == 0:
            raise KeyboardInterrupt
        return real_step(*args, **kwargs)

    def save(obj, f, *args, **kwargs):
        real_save(obj, f, *args, **kwargs)
        budget["saves"] -= 1
        if budget["saves"] == 0:  # half-written when the "kill" came
            if isinstance(f, (str, os.PathLike)):
                Path(f).write_bytes(Path(f).read_bytes()[:1000])
            else:  # serialised in memory first (io_utils.write_serialised): the file is still empty
                f.truncate(1000)
            raise KeyboardInterrupt

    monkeypatch.setattr(train_module, "train_step", step)
    monkeypatch.setattr(torch, "save", save)
    run = tmp_path / "run"
    resume = ["train", "--out", str(run), "--resume", "--no-progress", "--device", "cpu"]
    for i in range(10):  # at most one epoch of progress each time, so all ten interrupt
        if i % 2:
            budget.update(steps=-1, saves=1)  # inside the first checkpoint save
        else:
            budget.update(steps=int(rng.integers(1, 4)), saves=-1)  # inside an epoch
        assert main(resume if i else _train_args(tiny_data, run, "Du", epochs)) == 130
        assert not list(run.glob(".*.tmp"))
    budget.update(steps=-1, saves=-1)
    assert main(resume) == 0
    state = load_checkpoint(run / "checkpoint.pt")
    assert state["epoch"] == epochs and state["normalizer"] is not None
    assert _adam_steps(state) == epochs * steps_per_epoch
    assert [h["epoch"] for h in state["history"]] == list(range(1, epochs + 1))
    assert len((run / "history.jsonl").read_text().splitlines()) == epochs


_CHILD = textwrap.dedent(
    """
    import random, sys, time, torch
    real_save = torch.save
    def slow_save(obj, f, *a, **k):  # widen the window in which a kill lands inside a save
        real_save(obj, f, *a, **k)
        time.sleep(random.random() * 0.5)
    torch.save = slow_save
    from cavga.cli import main
    sys.exit(main(sys.argv[1:]))
    """
)


@pytest.mark.slow
def test_also_killed_ten_times_with_sigkill_resumes_to_the_same_run(tiny_data, tmp_path):
    """Also (fault injection): kill -9 a training process at random points ten times, resuming each
    time: the final checkpoint loads, no temp files stay, and the optimiser step count is that of an
    uninterrupted run."""
    epochs, steps_per_epoch = 6, 2
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
    first = _train_args(tiny_data, run, "Du", epochs)
    resume = ["train", "--out", str(run), "--resume", "--no-progress", "--device", "cpu"]
    rng = np.random.default_rng(1)
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", _CHILD, *_train_args(tiny_data, tmp_path / "ref", "Du", 1)], env=env)
    one_epoch_run = time.monotonic() - t0
    assert proc.returncode == 0
    for i in range(10):
        child = subprocess.Popen([sys.executable, "-c", _CHILD, *(first if i == 0 else resume)], env=env)
        time.sleep(one_epoch_run * (0.6 + rng.random()))
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert subprocess.run([sys.executable, "-c", _CHILD, *resume], env=env).returncode == 0
    state = load_checkpoint(run / "checkpoint.pt")
    assert state["epoch"] == epochs and _adam_steps(state) == epochs * steps_per_epoch
    assert not list(run.glob(".*.tmp"))


def test_also_bad_values_met_only_at_resolution_or_validation_are_one_line(trained, tiny_data, tmp_path, capsys):
    """Also: a word where a number or auto goes is refused before training resolves it, and validate's
    --copies must be 1 or more."""
    assert main(_train_args(tiny_data, tmp_path / "r", "Du", 1, "--set", "infer.mask_fade=Auto")) == 2
    one_line_error(capsys, "infer.mask_fade", "'Auto'")
    assert not (tmp_path / "r").exists()
    for copies in ("0", "-1"):
        assert main(["validate", str(_copy_run(trained, tmp_path / copies)), "--copies", copies]) == 2
        one_line_error(capsys, f"--copies {copies}", "1 or more")


def test_also_demo_takes_every_training_flag(monkeypatch, tmp_path):
    """Also: `cavga demo` reads the training flags `cavga train` reads (--resize and --patience were dropped)."""
    import cavga.demo

    seen = {}

    def stop(out, cfg, progress):
        seen["cfg"] = cfg
        raise CavgaError("stopped by the test")

    monkeypatch.setattr(cavga.demo, "run_demo", stop)
    argv = ["demo", "--out", str(tmp_path / "d"), "--resize", "pad", "--patience", "3", "--validate-every", "5"]
    assert main([*argv, "--no-progress"]) == 2
    cfg = seen["cfg"]
    assert (cfg.data.resize, cfg.train.patience, cfg.train.validate_every) == ("pad", 3, 5)


def test_also_a_changed_map_setting_says_why_it_needs_the_moved_training_data(tiny_data, tmp_path, capsys):
    """Also: --set infer.map_blur refits the map's statistics on the held-out normals; where the data set
    has moved since training, the one line says that, not only which image is missing."""
    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    run = tmp_path / "run"
    assert main(_train_args(data, run, "Du", 1, "--no-check")) == 0
    shutil.rmtree(data)
    assert main(["evaluate", str(run), "--device", "cpu", "--no-progress", "--set", "infer.map_blur=0"]) == 2
    one_line_error(capsys, "infer.map_blur=0", "held-out normal images", "image file not found")


def test_also_files_from_others_cannot_lead_writes_out_of_their_folders(trained, tiny_data, tmp_path, capsys):
    """Also (security): a run folder or --out someone else made cannot make cavga write, empty or delete
    a file elsewhere: a split.json defect type that is a path, a .lock that is a symbolic link, and a
    predictions.json naming files outside --out beside a symlinked report folder are all refused."""
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")

    run = _copy_run(trained, tmp_path)
    split = json.loads((run / "split.json").read_text())
    split["test"][-1]["defect_type"] = "../../elsewhere"
    (run / "split.json").write_text(json.dumps(split))
    assert main(["evaluate", str(run), "--device", "cpu", "--no-progress"]) == 2
    one_line_error(capsys, "split.json", "not a plain folder name")

    run = _copy_run(trained, tmp_path / "b")
    (run / ".lock").unlink(missing_ok=True)
    (run / ".lock").symlink_to(victim)
    assert main(["evaluate", str(run), "--device", "cpu", "--no-progress"]) == 2
    one_line_error(capsys, ".lock", "symbolic link")
    assert victim.read_text() == "keep me"

    out = tmp_path / "out"
    (out / "report").mkdir(parents=True)
    (out / "report" / "img").symlink_to(tmp_path)  # the victim's folder
    outputs = ["report/img/victim.txt", "../victim.txt", str(victim)]
    (out / "predictions.json").write_text(json.dumps({"run": "x", "predictions": [], "outputs": outputs}))
    image = next((tiny_data / "brick" / "test" / "good").glob("*.png"))
    argv = ["predict", str(_copy_run(trained, tmp_path / "c")), str(image), "--out", str(out), "--device", "cpu"]
    assert main([*argv, "--report"]) == 2
    one_line_error(capsys, "report/img", "symbolic link")
    assert victim.read_text() == "keep me"
    from cavga.predict_outputs import earlier_outputs

    assert earlier_outputs(out) == set()  # a list naming files elsewhere claims none of them


def test_also_evaluate_never_writes_through_a_linked_output_folder(trained, tmp_path, capsys):
    """Also (security): a run folder whose maps/, overlays/ or report/ is a symbolic link is refused by
    evaluate before it writes anything, and a linked report/ by `cavga report` too: writing through
    the link replaced a file elsewhere (a user's 0000.png)."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "0000.png").write_bytes(b"a user's picture")
    evaluate = ["evaluate", "--device", "cpu", "--no-progress"]
    for name in ("maps", "overlays", "report", ".report.new"):
        run = _copy_run(trained, tmp_path / name)
        (run / name).symlink_to(elsewhere, target_is_directory=True)
        assert main([evaluate[0], str(run), *evaluate[1:]]) == 2, name
        one_line_error(capsys, run / name, "symbolic link", "cavga evaluate")
        assert not (run / "metrics.json").exists() and not (run / "scores.json").exists()
        assert [p.name for p in elsewhere.iterdir()] == ["0000.png"], name
    run = _copy_run(trained, tmp_path / "evaluated")
    assert main([evaluate[0], str(run), *evaluate[1:]]) == 0
    shutil.rmtree(run / "report")
    (run / "report").symlink_to(elsewhere, target_is_directory=True)
    assert main(["report", str(run)]) == 2
    one_line_error(capsys, run / "report", "symbolic link", "cavga report")
    assert (run / "report").is_symlink() and [p.name for p in elsewhere.iterdir()] == ["0000.png"]
    assert (elsewhere / "0000.png").read_bytes() == b"a user's picture"


def test_also_evaluate_removes_the_temp_files_a_killed_evaluate_left(trained, tmp_path):
    """Also: the temp files of an evaluate killed mid-write (in maps/, overlays/, beside metrics.json
    and scores.json) are removed by the next one; other files, and another command's temp files in
    the run folder, stay."""
    run = _copy_run(trained, tmp_path)
    for folder in ("maps", "overlays"):
        (run / folder).mkdir()
    stale = [run / "maps" / ".0003.png.0123abcd.tmp", run / "overlays" / ".hole_000.png.89abcdef.tmp"]
    stale += [run / ".scores.json.0123abcd.tmp", run / ".metrics.json.89abcdef.tmp"]
    kept = [run / "maps" / ".notes.tmp", run / ".validation.json.0123abcd.tmp"]
    for p in stale + kept:
        p.write_text("x")
    assert main(["evaluate", str(run), "--device", "cpu", "--no-progress"]) == 0
    assert [p for p in stale if p.exists()] == [] and all(p.read_text() == "x" for p in kept)


def _spoiled(trained, tmp_path, name, edit) -> Path:
    """A copy of the Du run whose checkpoint ``edit`` (a function of the loaded dict) has changed."""
    run = _copy_run(trained, tmp_path / name)
    state = torch.load(run / CHECKPOINT, weights_only=True)
    edit(state)
    torch.save(state, run / CHECKPOINT)
    return run


def _set(key, value, inner=None):
    """An edit setting the checkpoint's ``key`` (or its field ``inner``) to ``value``."""
    return lambda state: state.__setitem__(key, value) if inner is None else state[key].__setitem__(inner, value)


# checkpoint edits, each with the words its one-line refusal names beside the checkpoint
SPOILED = {
    "normalizer": (_set("normalizer", "garbage"), ["normalizer", "str"]),
    "epoch": (_set("epoch", "x"), ["epoch", "not an integer"]),
    "model": (_set("model", "x"), ["model", "not a mapping"]),
    **{
        key: (_set(key, "x"), [key, "not a mapping or None"])
        for key in ("attention_direction", "image_score", "weak_map", "shifted_map", "residual_mask")
    },
    **{key: (_set(key, "x"), [key]) for key in ("mask_quantile", "mask_peak_fraction")},
    "decided-direction": (_set("attention_direction", "sideways", "attention_direction"), ["'sideways'"]),
    "decided-quantile": (_set("mask_quantile", [1, 2], "mask_quantile"), ["mask_quantile", "[1, 2]"]),
    "normalizer-lo": (_set("normalizer", "x", "lo"), ["normalizer.lo", "not a number"]),
    "residual-pair": (_set("residual_mask", "x", "residual_mask"), ["residual_mask", "pair"]),
    "cam-scale": (
        _set("model", torch.zeros(3), "cam_scale"),
        ["not this run's network", "size mismatch for cam_scale"],
    ),
}


def test_also_spoiled_checkpoint_fields_are_one_line(trained, tiny_data, tmp_path, capsys):
    """Also: a checkpoint field of the wrong type (the normaliser, the epoch, the weights, training's
    decisions), a decided value out of its setting's range and weights of another shape are refused by
    predict and evaluate in one line naming the checkpoint and the field; an older checkpoint lacking
    the optional fields still predicts."""
    image = str(next((tiny_data / "brick" / "test" / "good").glob("*.png")))
    for name, (edit, words) in SPOILED.items():
        run = _spoiled(trained, tmp_path, name, edit)
        assert main(["predict", str(run), image, "--out", str(tmp_path / f"p-{name}"), "--device", "cpu"]) == 2, name
        one_line_error(capsys, run / CHECKPOINT, *words)
        if name in ("normalizer", "cam-scale"):
            assert main(["evaluate", str(run), "--device", "cpu", "--no-progress"]) == 2
            one_line_error(capsys, run / CHECKPOINT, *words)
    optional = ("epoch_choice", "history", "residual_mask", "mask_quantile", "mask_peak_fraction", "image_score")
    old = _spoiled(trained, tmp_path, "old", lambda state: [state.pop(key, None) for key in optional])
    assert main(["predict", str(old), image, "--out", str(tmp_path / "p-old"), "--device", "cpu"]) == 0
