"""A user's own files in an output folder are never replaced: train, benchmark, a grid and a category
sweep refuse, before any work, a file of theirs where they would write one of their own."""

import shutil

import pytest
import yaml

from cavga import grid as G
from cavga.cli import main
from cavga.demo_data import generate_demo_dataset
from cavga.errors import CavgaError

TINY = [
    "--epochs", "1", "--image-size", "32", "--batch-size", "4", "--device", "cpu", "--no-progress",
    "--set", "model.base_channels=8", "--set", "model.latent_channels=8", "--set", "model.encoder_init=dcgan",
]  # fmt: skip


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    generate_demo_dataset(root, seed=0, n_train=8, n_test_good=2, n_test_defect=2, crop=32)
    return root


def _train(data, out, *extra) -> list[str]:
    args = ["train", "--data", str(data), "--category", "brick", "--model", "Du", "--out", str(out), "--no-check"]
    return args + TINY + list(extra)


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("config.yaml", "# my project's settings\nserver: prod-01\n"),
        ("split.json", '{"mine": 1}'),
        ("history.jsonl", "my notes\n"),
        ("validation.json", "[1, 2]"),
    ],
)
def test_train_refuses_a_users_file_it_would_replace(data, tmp_path, capsys, name, text):
    out = tmp_path / "project"
    out.mkdir()
    (out / name).write_text(text)
    assert main(_train(data, out)) == 2
    err = capsys.readouterr().err
    assert f"{out / name}: not written by `cavga train`; it would be replaced (use another --out)" in err
    assert (out / name).read_text() == text and sorted(p.name for p in out.iterdir()) == [name]


def test_train_takes_over_what_a_run_stopped_before_its_first_checkpoint_left(data, tmp_path):
    out = tmp_path / "run"
    assert main(_train(data, out)) == 0
    (out / "checkpoint.pt").unlink()  # as if stopped in its first epoch: config.yaml, split.json of a run
    (out / "history.jsonl").unlink()
    assert main(_train(data, out)) == 0
    assert (out / "checkpoint.pt").is_file()


def test_benchmark_refuses_a_users_table_and_reruns_into_its_own(data, tmp_path, capsys):
    out = tmp_path / "bench"
    out.mkdir()
    (out / "results.md").write_text("# my thesis table\n")
    args = ["benchmark", "--data", str(data), "--category", "brick", "--models", "Du", "--out", str(out), *TINY]
    assert main(args) == 2
    assert "results.md: not written by `cavga benchmark`" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["results.md"]  # nothing trained
    (out / "results.md").unlink()
    assert main(args) == 0
    assert main(args) == 0  # its own results.json, results.md and report.html: replaced on a rerun


def test_a_grid_and_a_category_sweep_refuse_a_users_table(data, tmp_path, capsys):
    grid = {"data": {"root": str(data), "layout": "mvtec", "image_size": 32}, "categories": ["brick"],
            "train": {"epochs": 1, "device": "cpu"}, "models": ["Du"]}  # fmt: skip
    (tmp_path / "g.yaml").write_text(yaml.safe_dump(grid))
    out = tmp_path / "grid"
    out.mkdir()
    (out / "results.csv").write_text("mine\n")
    with pytest.raises(CavgaError, match="results.csv: not written by `cavga benchmark --grid`"):
        G.run_grid(G.load_grid(tmp_path / "g.yaml"), out, progress=False)
    assert [p.name for p in out.iterdir()] == ["results.csv"]

    sweep = tmp_path / "sweep"
    sweep.mkdir()
    (sweep / "summary.md").write_text("mine\n")
    args = _train(data, sweep)
    args[args.index("brick")] = "all"
    assert main(args) == 2
    assert "summary.md: not written by `cavga train --category`" in capsys.readouterr().err
    assert [p.name for p in sweep.iterdir()] == ["summary.md"]
    shutil.rmtree(sweep)
