"""What `cavga predict` takes from a folder it walks: images only, as the data loaders list them."""

import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from _tiny_run import shared_data, shared_run
from cavga.cli import main
from cavga.data import folder_split


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return shared_run(tmp_path_factory)


@pytest.fixture(scope="module")
def brick(tmp_path_factory):
    return shared_data(tmp_path_factory) / "brick"


def _predict(run, *inputs, out, flags=()) -> int:
    return main(["predict", str(run), *map(str, inputs), "--out", str(out), "--device", "cpu", *flags])


def _saved(out: Path) -> dict:
    return json.loads((out / "predictions.json").read_text())


def test_a_data_sets_masks_are_not_predicted_as_images(run, brick, tmp_path, capsys):
    """A `folder`-layout data set: its ground_truth/ masks are skipped and counted in one line; a
    mask named on the command line is still predicted."""
    ds = tmp_path / "ds"
    shutil.copytree(brick / "test" / "good", ds / "good")
    shutil.copytree(brick / "test" / "hole", ds / "hole")
    shutil.copytree(brick / "ground_truth" / "hole", ds / "ground_truth" / "hole")
    split = folder_split(ds)  # the layout takes it as images with masks
    assert any(r.mask_path for r in split.test)
    masks = sorted((ds / "ground_truth").rglob("*.png"))
    images = sorted((ds / "good").glob("*.png")) + sorted((ds / "hole").glob("*.png"))

    assert _predict(run, ds, out=tmp_path / "out") == 0
    assert sorted(Path(r["path"]) for r in _saved(tmp_path / "out")["predictions"]) == images
    said = [ln for ln in capsys.readouterr().err.splitlines() if "skipped" in ln]
    assert said == [f"cavga: warning: skipped {len(masks)} masks under {ds / 'ground_truth'} "
                    "(a data set's mask folder; name it, or its files, to predict them)"]  # fmt: skip

    assert _predict(run, masks[0], out=tmp_path / "one") == 0  # asked for by name
    assert [r["path"] for r in _saved(tmp_path / "one")["predictions"]] == [str(masks[0])]


def test_hidden_files_and_folders_are_left_out_as_in_training(run, brick, tmp_path):
    image = next((brick / "test" / "hole").glob("*.png"))
    folder = tmp_path / "in"
    for name in ("a.png", ".b.png", ".cache/c.png", "sub/d.png", "sub/.e.png"):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(image, folder / name)
    assert _predict(run, folder, out=tmp_path / "out") == 0
    rows = _saved(tmp_path / "out")["predictions"]
    assert [r["path"] for r in rows] == [str(folder / "a.png"), str(folder / "sub" / "d.png")]

    assert _predict(run, folder / ".b.png", out=tmp_path / "named") == 0  # asked for by name
    assert [r["path"] for r in _saved(tmp_path / "named")["predictions"]] == [str(folder / ".b.png")]


def test_a_file_named_on_the_command_line_is_read_whatever_its_extension(run, brick, tmp_path, capsys):
    """Named files are read whatever their extension (Pillow reads .webp and .gif); one that is no image
    is an unreadable image, in one line, and the others are still predicted (exit 2). A folder keeps
    its extension filter."""
    folder = tmp_path / "in"
    folder.mkdir()
    image = next((brick / "test" / "hole").glob("*.png"))
    shutil.copy(image, folder / "a.png")
    with Image.open(image) as im:
        im.save(folder / "b.webp", lossless=True)
        im.save(folder / "c.gif")
    (folder / "notes.txt").write_text("no image")
    named = [folder / n for n in ("a.png", "b.webp", "c.gif", "notes.txt")]
    out = tmp_path / "out"
    assert _predict(run, *named, out=out) == 2
    err = capsys.readouterr().err
    said = [ln for ln in err.splitlines() if ln.startswith("cavga: error:")]
    assert said[0].startswith(f"cavga: error: {folder / 'notes.txt'}: cannot read image (")
    assert len(said) == 2 and "1 of 4 images could not be read" in said[1]
    saved = _saved(out)
    assert [r["path"] for r in saved["predictions"]] == [str(p) for p in named[:3]]
    assert all((out / r["overlay"]).is_file() for r in saved["predictions"])
    assert [f["path"] for f in saved["failed"]] == [str(folder / "notes.txt")]

    assert _predict(run, folder, out=tmp_path / "walked") == 0  # a folder: images by their extension only
    assert [r["path"] for r in _saved(tmp_path / "walked")["predictions"]] == [str(folder / "a.png")]


def test_a_broken_symbolic_link_in_a_folder_is_a_failed_image(run, brick, tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(next((brick / "test" / "hole").glob("*.png")), folder / "a.png")
    (folder / "zz.png").symlink_to(tmp_path / "nowhere.png")
    out = tmp_path / "out"
    assert _predict(run, folder, out=out) == 2
    err = capsys.readouterr().err
    assert [ln for ln in err.splitlines() if "zz.png" in ln] == [
        f"cavga: error: {folder / 'zz.png'}: broken symbolic link (its target does not exist)"
    ]
    assert "1 of 2 images could not be read" in err
    saved = _saved(out)
    assert [r["path"] for r in saved["predictions"]] == [str(folder / "a.png")]
    assert [(f["path"], "broken symbolic link" in f["error"]) for f in saved["failed"]] == [
        (str(folder / "zz.png"), True)
    ]

    assert _predict(run, folder / "zz.png", out=tmp_path / "named") == 2  # named: an error before any work
    assert f"{folder / 'zz.png'}: broken symbolic link" in capsys.readouterr().err


def test_switching_map_format_removes_the_earlier_runs_map_only(run, brick, tmp_path):
    """A rerun into the same --out with the other --maps leaves one map per image: the earlier one,
    recorded in predictions.json as predict's, goes; a file of the user's with such a name stays."""
    hole = brick / "test" / "hole"
    out = tmp_path / "out"
    for maps, other in (("npy", ".png"), ("png16", ".npy"), ("npy", ".png")):
        assert _predict(run, hole, out=out, flags=["--maps", maps]) == 0
        saved = _saved(out)
        assert all((out / r["map"]).is_file() and not r["map"].endswith(other) for r in saved["predictions"])
        assert not list(out.glob(f"*_map{other}")) and not [f for f in saved["outputs"] if f.endswith(f"_map{other}")]

    mine = tmp_path / "mine"
    mine.mkdir()
    stem = sorted(hole.glob("*.png"))[0].stem
    (mine / f"{stem}_map.png").write_bytes(b"the user's own")
    assert _predict(run, hole, out=mine, flags=["--maps", "npy"]) == 0
    assert (mine / f"{stem}_map.png").read_bytes() == b"the user's own" and (mine / f"{stem}_map.npy").is_file()


def test_a_second_predict_into_the_same_out_says_which_earlier_rows_it_drops(run, brick, tmp_path, capsys):
    first, second = sorted((brick / "test" / "hole").glob("*.png"))[:2]
    out = tmp_path / "out"
    assert main(["predict", str(run), str(first), "--out", str(out), "--device", "cpu"]) == 0
    capsys.readouterr()
    assert main(["predict", str(run), str(first), "--out", str(out), "--device", "cpu"]) == 0
    assert "replaced; it listed" not in capsys.readouterr().err  # the same image again: nothing dropped
    assert main(["predict", str(run), str(second), "--out", str(out), "--device", "cpu"]) == 0
    err = capsys.readouterr().err
    assert "predictions.json: replaced; it listed 1 earlier prediction of images not given now" in err
    assert [r["path"] for r in json.loads((out / "predictions.json").read_text())["predictions"]] == [str(second)]
