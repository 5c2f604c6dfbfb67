"""`cavga train --category all|a,b`: one run per category, finished ones skipped, one summary."""

from __future__ import annotations

import json
import shutil

import pytest

import cavga.categories as categories
from _errors import one_line_error
from cavga.cli import main
from cavga.demo_data import generate_demo_dataset


@pytest.fixture(scope="module")
def two_categories(tmp_path_factory):
    root = tmp_path_factory.mktemp("mvtec")
    for cat in ("brick", "grass"):
        generate_demo_dataset(root, seed=0, n_train=8, n_test_good=2, n_test_defect=2, crop=32, category=cat)
    return root


def _args(root, out, category="all"):
    return [
        "train", "--data", str(root), "--category", category, "--model", "Du", "--out", str(out),
        "--epochs", "1", "--image-size", "32", "--batch-size", "4", "--device", "cpu", "--no-progress",
        "--set", "model.base_channels=8", "--set", "model.latent_channels=8",
    ]  # fmt: skip


def test_all_categories_train_then_skip_when_finished(two_categories, tmp_path, monkeypatch, capsys):
    out = tmp_path / "sweep"
    real_train, trained = categories.train, []

    def spy(cfg, run_dir, **kwargs):
        trained.append(cfg.data.category)
        return real_train(cfg, run_dir, **kwargs)

    monkeypatch.setattr(categories, "train", spy)
    assert main(_args(two_categories, out)) == 0
    assert trained == ["brick", "grass"]
    summary = json.loads((out / "summary.json").read_text())["categories"]
    assert [(r["category"], r["status"]) for r in summary] == [("brick", "trained"), ("grass", "trained")]
    for cat in ("brick", "grass"):
        metrics = json.loads((out / cat / "metrics.json").read_text())
        assert metrics["split"]["category"] == cat
        assert next(r for r in summary if r["category"] == cat)["metrics"] == metrics["metrics"]
    table = (out / "summary.md").read_text()
    assert "| brick | trained |" in table and "| mean |" in table
    checked = {c: json.loads((out / c / "validation.json").read_text())["metrics"]["pixel_auroc"] for c in trained}
    assert {r["category"]: r["painted_pixel_auroc"] for r in summary} == checked  # the painted-defect check
    assert table.splitlines()[2].endswith(f"| {checked['brick']:.3f} |")
    assert table.splitlines()[-1].endswith(f"| {(checked['brick'] + checked['grass']) / 2:.3f} |")

    trained.clear()
    assert main(_args(two_categories, out)) == 0  # everything finished: nothing trains again
    assert trained == []
    summary = json.loads((out / "summary.json").read_text())["categories"]
    assert {r["status"] for r in summary} == {"skipped (finished)"}
    assert {r["category"]: r["painted_pixel_auroc"] for r in summary} == checked  # read back, not recomputed

    monkeypatch.chdir(two_categories.parent)  # the same data named relatively: the same runs, still finished
    relative = _args(two_categories.name, out)
    assert main(relative) == 0 and trained == []

    (out / "grass" / "metrics.json").unlink()  # grass not evaluated: it is taken up again
    assert main(_args(two_categories, out, "grass,brick")) == 0
    assert trained == ["grass"]
    assert "grass: trained" in capsys.readouterr().out


RUN_COMMANDS = [
    ["evaluate", "--device", "cpu"], ["report"], ["validate", "--device", "cpu"], ["redecide", "NEW"],
    ["export", "--out", "NEW.pt"], ["predict", "IMAGES", "--out", "NEW"],
]  # fmt: skip


def test_every_command_given_the_sweeps_folder_says_to_give_a_category(two_categories, tmp_path, capsys):
    """OUT of a sweep is no run folder: each command that takes one says so, and to give OUT/<category>,
    rather than naming a file missing in OUT."""
    out = tmp_path / "sweep"
    assert main(_args(two_categories, out) + ["--no-check"]) == 0
    capsys.readouterr()
    for command in RUN_COMMANDS:
        rest = [str(two_categories / "brick" / "test") if a == "IMAGES" else a for a in command[1:]]
        rest = [str(tmp_path / a) if a.startswith("NEW") else a for a in rest]
        assert main([command[0], str(out), *rest]) == 2, command
        one_line_error(capsys, f"{out}: holds one run per category (brick, grass)", f"give {out / '<category>'}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sweep"]  # nothing written


def test_resuming_a_sweep_without_data_says_to_repeat_its_command(tmp_path, capsys):
    """A sweep keeps no config.yaml of its own: --resume without --data says to repeat the command."""
    for extra, said in ((["--resume"], "repeat its own command, with --data"), ([], "--data is required")):
        assert main(["train", "--category", "all", "--out", str(tmp_path / "sweep"), *extra]) == 2
        one_line_error(capsys, "--category all", said)


def test_unknown_category_in_a_list_is_one_line_error(two_categories, tmp_path, capsys):
    assert main(_args(two_categories, tmp_path / "x", "brick,carpet")) == 2
    err = capsys.readouterr().err.strip()
    assert "carpet" in err and "not found" in err and "brick, grass" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "x").exists()


def test_is_many():
    assert categories.is_many("all") and categories.is_many("a,b")
    assert not categories.is_many("bottle") and not categories.is_many(None)


def test_checkpoint_every_saves_every_nth_epoch_and_the_last(two_categories, tmp_path, monkeypatch):
    import cavga.train as train_module

    saved, real_save = [], train_module.save_checkpoint

    def spy(state, path):
        saved.append((state["epoch"], state["normalizer"] is not None))
        return real_save(state, path)

    monkeypatch.setattr(train_module, "save_checkpoint", spy)
    args = _args(two_categories, tmp_path / "run", "brick")
    args[args.index("--epochs") + 1] = "3"
    assert main([*args, "--set", "train.checkpoint_every=2"]) == 0
    assert saved == [(2, False), (3, False), (3, True)]
    assert len((tmp_path / "run" / "history.jsonl").read_text().splitlines()) == 3


def test_truncated_checkpoint_fails_the_memory_mapped_read_back(tmp_path):
    import torch

    from cavga.runtime import _safe_load

    path = tmp_path / "c.pt"
    torch.save({"w": torch.arange(100_000.0)}, path)
    assert torch.equal(_safe_load(path, mmap=True)["w"], torch.arange(100_000.0))
    path.write_bytes(path.read_bytes()[:-5000])
    with pytest.raises(Exception):  # noqa: B017 - any failure keeps the old checkpoint
        _safe_load(path, mmap=True)


def test_a_rerun_with_changed_settings_is_refused_or_evaluated_anew(two_categories, tmp_path, capsys):
    """A finished sweep rerun with another training setting is refused as --resume refuses it (it was
    skipped as finished, the old numbers reported under the new settings); with another inference
    setting each category is evaluated again under it, without training."""
    out = tmp_path / "sweep"
    assert main(_args(two_categories, out) + ["--no-check"]) == 0
    assert main(_args(two_categories, out) + ["--no-check", "--set", "model.base_channels=16"]) == 2
    said = capsys.readouterr()
    assert "cannot resume with model.base_channels=16" in said.out and "2 of 2 categories failed" in said.err
    assert main(_args(two_categories, out) + ["--no-check", "--set", "infer.score_threshold=0.9"]) == 0
    metrics = json.loads((out / "brick" / "metrics.json").read_text())
    assert (
        metrics["thresholds"]["score"] == 0.9 and len((out / "brick" / "history.jsonl").read_text().splitlines()) == 1
    )


def test_a_failing_category_is_reported_and_the_others_still_train(two_categories, tmp_path, capsys):
    root = tmp_path / "data"
    shutil.copytree(two_categories, root)
    (root / "empty" / "train" / "good").mkdir(parents=True)  # a category without training images
    (root / "empty" / "test").mkdir()
    out = tmp_path / "sweep"
    assert main(_args(root, out) + ["--no-check"]) == 2
    summary = json.loads((out / "summary.json").read_text())["categories"]
    status = {r["category"]: r["status"] for r in summary}
    assert status["brick"] == status["grass"] == "trained" and "no training images" in status["empty"]
    assert "1 of 3 categories failed (empty" in capsys.readouterr().err


def test_the_mean_row_says_how_many_categories_it_averages():
    """A failed category has no metrics: the mean is over the others, and its label says so."""
    ok = {"status": "trained", "metrics": {"image_auroc": 0.8}, "painted_pixel_auroc": 0.7}
    rows = [{**ok, "category": "brick"}, {**ok, "category": "tile"}]
    assert categories.format_summary(rows).splitlines()[-1].startswith("| mean | | 0.800 |")
    rows.append({"category": "grass", "status": "failed: no training images", "metrics": {}})
    assert categories.format_summary(rows).splitlines()[-1].startswith("| mean (2 of 3) | | 0.800 |")


def test_a_category_trained_for_more_epochs_than_asked_is_refused(two_categories, tmp_path, capsys):
    """--epochs 1 after a 2-epoch sweep: the category's 2-epoch numbers are not reported as finished."""
    out = tmp_path / "sweep"
    args = _args(two_categories, out) + ["--no-check"]
    args[args.index("--epochs") + 1] = "2"
    assert main(args) == 0
    capsys.readouterr()
    args[args.index("--epochs") + 1] = "1"
    assert main(args) == 2
    rows = json.loads((out / "summary.json").read_text())["categories"]
    for row in rows:
        said = f"failed: {out / row['category']}: trained for 2 epochs but the sweep asks for 1 (train.epochs); delete"
        assert row["status"].startswith(said) and row["metrics"] == {}
    assert "2 of 2 categories failed" in capsys.readouterr().err
