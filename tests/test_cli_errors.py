"""One-line errors and plain messages of the command line: an output that cannot be created, a file
the OS refuses, a run folder that is missing or a file, a run that held out no normal image, and a
test split without anomalies. Every test failed before its fix."""

from __future__ import annotations

import contextlib
import errno
import io
import json
from pathlib import Path

import pytest
from PIL import Image

import cavga.report
from _errors import one_line_error
from _tiny_run import shared_data, shared_run
from cavga.cli import main
from cavga.demo_data import generate_demo_dataset
from cavga.errors import CavgaError
from cavga.runlock import RunLock

TINY = [
    "--epochs", "1", "--image-size", "32", "--batch-size", "4", "--device", "cpu", "--no-progress",
    "--set", "model.base_channels=8", "--set", "model.latent_channels=8",
]  # fmt: skip
LONG = "a" * 300  # longer than any file system's file name (255 bytes): no folder of this name can be made


@pytest.fixture
def a_file(tmp_path) -> Path:
    path = tmp_path / "file.txt"
    path.write_text("not a folder\n")
    return path


# ------------------------------------------------------------- an --out that cannot be created


def test_redecide_out_under_a_file_is_one_line(tmp_path_factory, a_file, capsys):
    run = shared_run(tmp_path_factory)
    out = a_file / "sub"
    assert main(["redecide", str(run), str(out), "--device", "cpu"]) == 2
    one_line_error(capsys, out, "cannot create this folder", f"{a_file} is a file")


def test_redecide_out_that_cannot_be_named_is_one_line(tmp_path_factory, tmp_path, capsys):
    run = shared_run(tmp_path_factory)
    out = tmp_path / LONG / "sub"
    assert main(["redecide", str(run), str(out), "--device", "cpu"]) == 2
    one_line_error(capsys, out, "cannot create this folder", "too long")
    assert list(tmp_path.iterdir()) == []  # the trial made nothing that stays


def test_export_out_under_a_file_is_one_line(tmp_path_factory, a_file, capsys):
    run = shared_run(tmp_path_factory)
    for out in (a_file / "model.pt", a_file / "sub" / "model.pt"):
        assert main(["export", str(run), "--out", str(out)]) == 2
        one_line_error(capsys, out, "cannot write this file", f"{a_file} is a file")
    assert a_file.read_text() == "not a folder\n"


def test_train_and_predict_out_that_cannot_be_named_is_one_line(tmp_path_factory, tmp_path, capsys):
    data, run = shared_data(tmp_path_factory), shared_run(tmp_path_factory)
    out = tmp_path / LONG
    train = ["train", "--data", str(data), "--layout", "mvtec", "--category", "brick", "--out", str(out), *TINY]
    assert main(train) == 2
    one_line_error(capsys, "--out", out, "cannot create this folder", "too long")
    assert main(["predict", str(run), str(data / "brick" / "test" / "good"), "--out", str(out), "--device", "cpu"]) == 2
    one_line_error(capsys, "--out", out, "cannot create this folder", "too long")
    assert list(tmp_path.iterdir()) == []


def test_run_lock_folder_that_cannot_be_created_is_a_cavga_error(tmp_path, a_file):
    """The folder is made when the lock is taken (train, predict, evaluate): what the OS says there
    is one line naming the folder, and the parents made on the way are removed again."""
    with pytest.raises(CavgaError, match=rf"{a_file / 'sub'}: cannot create this folder \({a_file} is a file\)"):
        RunLock(a_file / "sub", "train").acquire()
    folder = tmp_path / "new" / LONG
    with pytest.raises(CavgaError, match="cannot create this folder") as caught:
        RunLock(folder, "predict").acquire()
    assert str(folder) in str(caught.value) and "\n" not in str(caught.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt"]  # tmp_path/new made, then removed


def test_os_error_naming_a_file_is_one_line_and_a_bug_keeps_its_traceback(tmp_path, monkeypatch, capsys):
    """What no check foresaw (a full disk, a permission): ``cavga: error: PATH: REASON``, rc 2."""
    full = tmp_path / "report" / "index.html"

    def disk_full(run_dir):
        raise OSError(errno.ENOSPC, "No space left on device", str(full))

    monkeypatch.setattr(cavga.report, "write_run_report", disk_full)
    assert main(["report", str(tmp_path)]) == 2
    assert capsys.readouterr().err == f"cavga: error: {full}: No space left on device\n"

    def bug(run_dir):
        raise OSError(errno.EINVAL, "Invalid argument")  # no file named: not the user's to fix

    monkeypatch.setattr(cavga.report, "write_run_report", bug)
    with pytest.raises(OSError):
        main(["report", str(tmp_path)])
    monkeypatch.setattr(cavga.report, "write_run_report", lambda run_dir: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        main(["report", str(tmp_path)])


# ------------------------------------------------------------- a run folder that is missing, or a file


@pytest.mark.parametrize(
    "command",
    [
        ["report"],
        ["evaluate", "--device", "cpu"],
        ["validate", "--device", "cpu"],
        ["redecide", "NEW"],
        ["export", "--out", "OUT.pt"],
    ],  # fmt: skip
)
def test_run_folder_missing_or_a_file(tmp_path, command, capsys):
    holds = "metrics.json" if command[0] == "report" else "checkpoint.pt"
    missing, given_file = tmp_path / "runs" / "nope", tmp_path / "r1" / holds
    given_file.parent.mkdir()
    given_file.write_text("{}\n")
    expected = {missing: [f"{missing}: no such run folder"]}
    expected[given_file] = [f"{given_file}: not a run folder", f"give the folder that holds {holds}"]
    for run, words in expected.items():
        args = [a.replace("NEW", str(tmp_path / "new")).replace("OUT", str(tmp_path / "out")) for a in command]
        assert main([args[0], str(run), *args[1:]]) == 2
        one_line_error(capsys, *words)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r1"]  # nothing written


@pytest.mark.parametrize("command", ["evaluate", "report", "validate", "export", "predict"])
def test_a_folder_of_run_folders_names_them_and_says_to_give_one(tmp_path, command, capsys):
    """`cavga benchmark`'s OUT holds one run per variant: named as such, not a run missing its files."""
    out = tmp_path / "bench"
    for name in ("AE-L2", "Du", "Dw", "Ru", "Rw"):
        (out / name).mkdir(parents=True)
        (out / name / "config.yaml").write_text("{}\n")
    (out / "results.json").write_text("{}\n")
    rest = {"export": ["--out", str(tmp_path / "m.pt")], "predict": [str(out), "--out", str(tmp_path / "p")]}
    assert main([command, str(out), *rest.get(command, [])]) == 2
    one_line_error(capsys, f"{out}: holds run folders (AE-L2, Du, Dw and 2 more)", f"e.g. {out / 'AE-L2'}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bench"]


def test_a_benchmark_says_what_a_later_variant_lacks_before_the_first_trains(tmp_path, capsys):
    """Ru's ResNet-18 weights missing (offline, or a wrong file): said before Du trains, not after."""
    data = generate_demo_dataset(tmp_path / "data", seed=0, n_train=4, n_test_good=1, n_test_defect=1, crop=48)
    missing = tmp_path / "resnet18.pt"
    out = tmp_path / "bench"
    argv = ["benchmark", "--data", str(data.parent), "--category", "brick", "--models", "Du,Ru", "--out", str(out)]
    assert main([*argv, *TINY, "--set", f"model.backbone_weights={missing}", "--set", "model.encoder_init=dcgan"]) == 2
    one_line_error(capsys, str(missing))
    assert not (out / "Du").exists()


def test_predict_with_a_missing_run_folder_says_so(tmp_path, capsys):
    image = tmp_path / "a.png"
    Image.new("RGB", (8, 8)).save(image)
    assert main(["predict", str(tmp_path / "nope"), str(image), "--out", str(tmp_path / "out")]) == 2
    one_line_error(capsys, f"{tmp_path / 'nope'}: no such run folder")


# ------------------------------------------------------------- a run with no held-out normal image


@pytest.fixture(scope="module")
def one_image_data(tmp_path_factory) -> Path:
    """One normal training image (too few to hold one out) and a test split of normal images only."""
    root = tmp_path_factory.mktemp("one-image")
    generate_demo_dataset(root, seed=0, n_train=1, n_test_good=3, n_test_defect=0, crop=48)
    return root


@pytest.fixture(scope="module")
def one_image_run(one_image_data, tmp_path_factory) -> tuple[Path, str, str]:
    """The run trained on it (data.val_fraction 0.1, the default), and what its training printed."""
    out = tmp_path_factory.mktemp("one-image-run") / "run"
    train = ["train", "--data", str(one_image_data), "--layout", "mvtec", "--category", "brick", "--out", str(out)]
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        assert main([*train, *TINY, "--validate-every", "0"]) == 0
    return out, stdout.getvalue(), stderr.getvalue()


def test_no_held_out_normals_says_why_and_warns(one_image_run):
    """The run's val_fraction is 0.1; one training image is too few to hold one out."""
    out, stdout, stderr = one_image_run
    skipped = [line for line in stdout.splitlines() if line.startswith("painted-defect check skipped")]
    assert len(skipped) == 1 and "val_fraction is 0" not in skipped[0], skipped
    assert "1 normal training image at data.val_fraction 0.1 leaves none held out" in skipped[0]
    assert "add normal training images" in skipped[0]
    fitted = [line for line in stderr.splitlines() if "fitted on training images" in line]
    assert len(fitted) == 1 and fitted[0].startswith(f"cavga: warning: {out}:"), stderr


def test_validate_without_held_out_normals_says_why(one_image_run, capsys):
    out = one_image_run[0]
    assert main(["validate", str(out), "--device", "cpu"]) == 2
    line = one_line_error(capsys, out, "held out no normal images", "1 normal training image at data.val_fraction 0.1")
    assert "val_fraction is 0" not in line


def test_validate_every_without_held_out_normals_says_why(one_image_data, tmp_path, capsys):
    out = tmp_path / "run"
    train = ["train", "--data", str(one_image_data), "--layout", "mvtec", "--category", "brick", "--out", str(out)]
    assert main([*train, *TINY, "--validate-every", "1"]) == 2
    line = one_line_error(capsys, "train.validate_every", "1 normal training image at data.val_fraction 0.1")
    assert "val_fraction is 0" not in line and "--validate-every 0" in line
    assert not out.exists()  # refused before the run folder (or a restart candidate's) was written
    assert main([*train, *TINY, "--validate-every", "1", "--restarts", "2"]) == 2
    one_line_error(capsys, "train.validate_every")
    assert not out.exists()


def test_why_none_held_out():
    from cavga.data import why_none_held_out

    assert why_none_held_out(12, 0.0).startswith("data.val_fraction is 0; set it above 0")
    assert why_none_held_out(1, 0.2).startswith("1 normal training image at data.val_fraction 0.2 leaves none")
    assert why_none_held_out(0, 0.2).startswith("0 normal training images at data.val_fraction 0.2 leave none")


# ------------------------------------------------------------- a test split without anomalous images


def test_evaluate_without_anomalous_test_images_says_so(one_image_run, capsys):
    out = one_image_run[0]
    assert main(["evaluate", str(out), "--device", "cpu", "--no-progress"]) == 0
    stdout = capsys.readouterr().out
    verdicts = [img["verdict"] for img in json.loads((out / "scores.json").read_text())["images"]]
    flagged = sum(verdicts)
    assert len(verdicts) == 3
    said = [line for line in stdout.splitlines() if line.startswith("the test split has")]
    assert said == [
        "the test split has 3 normal and 0 anomalous images, so detection and localisation metrics are undefined; "
        f"{flagged} of the 3 normal images {'was' if flagged == 1 else 'were'} flagged anomalous "
        f"(false-alarm rate {flagged / 3:.3f})"
    ], stdout
    assert "undefined on this test set" not in stdout and "no pixel masks" not in stdout


def test_a_bad_flag_value_is_named_by_its_flag_and_its_key(tmp_path, capsys):
    """The flag as typed beside the config key; the same value through --set names the key alone."""
    base = ["train", "--data", str(tmp_path / "none"), "--layout", "folder", "--out", str(tmp_path / "run")]
    for flag, value, key in (("--image-size", "48", "data.image_size"), ("--epochs", "0", "train.epochs")):
        assert main([*base, flag, value]) == 2
        line = one_line_error(capsys, f"{flag} ({key}): {value}")
        assert main([*base, "--set", f"{key}={value}"]) == 2
        assert one_line_error(capsys, key) == line.replace(f"{flag} ({key})", key)
    assert not (tmp_path / "run").exists()


def test_a_full_disk_while_writing_names_the_file_and_leaves_the_old_one(tmp_path):
    from cavga.errors import CavgaError
    from cavga.io_utils import atomic_write, atomic_write_text

    target = atomic_write_text(tmp_path / "metrics.json", "old")

    def fill(tmp: str) -> None:
        with open(tmp, "w") as f:
            f.write("half")
            raise OSError(errno.ENOSPC, "No space left on device")  # as f.write raises it: no file name

    with pytest.raises(CavgaError, match=r"metrics.json: cannot write this file \(No space left on device\)"):
        atomic_write(target, fill)
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_an_interrupted_benchmark_says_to_run_the_same_command_again(tmp_path, monkeypatch, capsys):
    """`cavga benchmark` has no --resume: its interrupt line says how it does continue."""
    import cavga.grid

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cavga.grid, "run_grid", interrupted)
    grid = tmp_path / "g.yaml"
    grid.write_text("models: [Du]\ndata: {layout: digits}\ncategories: ['0']\n")
    assert main(["benchmark", "--grid", str(grid), "--out", str(tmp_path / "out")]) == 130
    err = capsys.readouterr().err
    assert err.startswith("cavga: interrupted; the same command again continues") and "--resume" not in err


_FILE_SIZE_LIMITED = """
import resource, signal, sys
import torch
from cavga.errors import CavgaError
from cavga.export import export_run
from cavga.runtime import load_checkpoint, save_checkpoint

checkpoint, run, exported = sys.argv[1:]
save_checkpoint({"w": torch.zeros(8)}, checkpoint)  # the good one, before the limit
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # over the limit a write fails (EFBIG) instead of killing us
resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))  # no file may grow past 20 kB: a full disk
for name, write in (("checkpoint", lambda: save_checkpoint({"w": torch.zeros(100_000)}, checkpoint)),
                    ("export", lambda: export_run(run, exported, "torchscript"))):
    try:
        write()
        print(name, "written")
    except CavgaError as e:
        print(name, "error:", e)
print("kept", load_checkpoint(checkpoint, required=("w",))["w"].numel())
"""


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="RLIMIT_FSIZE as Linux applies it")
def test_a_real_failed_write_of_a_checkpoint_or_an_export_is_one_line_and_keeps_the_old_file(
    tmp_path_factory, tmp_path
):
    """A full disk seen by torch's own writers (not a faked OSError): torch.save reports it as a
    RuntimeError and torch.jit.save aborts the process. Both must end as atomic_write's one line,
    with the previous checkpoint intact. A file-size limit (RLIMIT_FSIZE) makes the write fail for real."""
    import subprocess
    import sys

    run = shared_run(tmp_path_factory)
    checkpoint, exported = tmp_path / "checkpoint.pt", tmp_path / "model.pt"
    script = [sys.executable, "-c", _FILE_SIZE_LIMITED, str(checkpoint), str(run), str(exported)]
    done = subprocess.run(script, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert lines[0] == f"checkpoint error: {checkpoint}: cannot write this file (File too large); it is left as it was"
    assert lines[1] == f"export error: {exported}: cannot write this file (File too large); it is left as it was"
    assert lines[2] == "kept 8"  # the good checkpoint, not replaced
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"]  # no temporary file left
