"""`cavga predict` output a user can build on: raw maps at the image's size, mirrored folders, a gallery page."""

import json
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest
from PIL import Image

from _tiny_run import shared_data, shared_run
from cavga.cli import main
from cavga.inference import Predictor
from cavga.predict import JOURNAL_FILE, predict_to_folder


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return shared_run(tmp_path_factory)


@pytest.fixture(scope="module")
def test_folder(tmp_path_factory):
    return shared_data(tmp_path_factory) / "brick" / "test"


def test_outputs_mirror_subfolders_and_maps_read_back(run, test_folder, tmp_path):
    out = tmp_path / "out"
    assert main(["predict", str(run), str(test_folder), "--out", str(out), "--device", "cpu"]) == 0
    saved = json.loads((out / "predictions.json").read_text())
    rows = saved["predictions"]
    images = sorted(test_folder.rglob("*.png"))
    assert len(rows) == len(images)
    # good/000.png and hole/000.png keep their folders instead of becoming 000 and 000_1
    assert {r["overlay"] for r in rows} == {p.relative_to(test_folder).with_suffix("").as_posix() + "_overlay.png"
                                          for p in images}  # fmt: skip
    assert "65535" in saved["maps"]
    preds = {p.path: p for p in Predictor.from_run(run, "cpu").predict_paths([r["path"] for r in rows])}
    for r in rows:
        m = np.asarray(Image.open(out / r["map"]), dtype=np.float64) / 65535  # the scaling predictions.json states
        ref = preds[r["path"]].anomaly_map
        assert m.shape == ref.shape == np.asarray(Image.open(r["path"])).shape[:2]  # the image's own size
        assert np.abs(m - ref).max() <= 0.5 / 65535 + 1e-6
        assert (out / r["overlay"]).is_file() and (out / r["mask"]).is_file()


def test_npy_maps_are_exact(run, test_folder, tmp_path):
    out = tmp_path / "out"
    folder = test_folder / "hole"
    assert main(["predict", str(run), str(folder), "--out", str(out), "--device", "cpu", "--maps", "npy"]) == 0
    rows = json.loads((out / "predictions.json").read_text())["predictions"]
    # the same images in the same batch as `cavga predict` read them: a batch of one against a batch of
    # two may differ in the last float bit (the convolutions sum in another order), which is not the point
    preds = Predictor.from_run(run, "cpu").predict_paths([r["path"] for r in rows])
    assert len(rows) >= 2
    for r, pred in zip(rows, preds, strict=True):
        m = np.load(out / r["map"])
        assert m.dtype == np.float32 and np.array_equal(m, pred.anomaly_map)


def test_report_page_shows_every_image_and_is_not_read_back(run, test_folder, tmp_path):
    out = tmp_path / "same"
    shutil.copytree(test_folder / "hole", out / "hole")
    shutil.copytree(test_folder / "good", out / "good")
    n = len(list(out.rglob("*.png")))
    for _ in range(2):  # the second run must not take the page's thumbnails (or maps) for inputs
        assert main(["predict", str(run), str(out), "--out", str(out), "--device", "cpu", "--report"]) == 0
        rows = json.loads((out / "predictions.json").read_text())["predictions"]
        assert len(rows) == n
    page = (out / "report" / "index.html").read_text()

    class Imgs(HTMLParser):
        srcs: list = []

        def handle_starttag(self, tag, attrs):
            if tag == "img":
                self.srcs.append(dict(attrs)["src"])

    Imgs().feed(page)
    assert len(Imgs.srcs) == 3 * n and all((out / "report" / s).is_file() for s in Imgs.srcs)
    for r in rows:
        assert f'data-score="{r["score"]}"' in page and r["overlay"].removesuffix("_overlay.png") in page


def test_files_from_several_folders_keep_their_folders(run, test_folder, tmp_path):
    files = sorted(str(p) for p in test_folder.glob("*/000.png"))  # good/000.png, hole/000.png, ...
    assert main(["predict", str(run), *files, "--out", str(tmp_path / "a"), "--device", "cpu"]) == 0
    rows = json.loads((tmp_path / "a" / "predictions.json").read_text())["predictions"]
    assert [r["overlay"] for r in rows] == [f"{p.split('/')[-2]}/000_overlay.png" for p in files]
    one_folder = sorted(str(p) for p in (test_folder / "hole").glob("*.png"))
    assert main(["predict", str(run), *one_folder, "--out", str(tmp_path / "b"), "--device", "cpu"]) == 0
    rows = json.loads((tmp_path / "b" / "predictions.json").read_text())["predictions"]
    assert [r["mask"] for r in rows] == [p.split("/")[-1].replace(".png", "_mask.png") for p in one_folder]


def test_report_never_touches_the_users_files_and_old_outputs_stay_ours(run, test_folder, tmp_path):
    """--out is an input folder that holds report/img/a.png of the user's: --report refuses before any
    work; elsewhere, a run with --report then two without never read the page's thumbnails as inputs
    (the outputs list of predictions.json keeps every run's files while they exist)."""
    users = tmp_path / "photos"
    shutil.copytree(test_folder / "hole", users)
    (users / "report" / "img").mkdir(parents=True)
    shutil.copy(next(users.glob("*.png")), users / "report" / "img" / "0000_input.png")
    before = {p: p.read_bytes() for p in users.rglob("*") if p.is_file()}
    assert main(["predict", str(run), str(users), "--out", str(users), "--device", "cpu", "--report"]) == 2
    after = {p: p.read_bytes() for p in users.rglob("*") if p.is_file() and p.name != ".lock"}  # the lock stays
    assert after == before  # nothing written or removed

    out = tmp_path / "same"
    shutil.copytree(test_folder / "hole", out)
    n = len(list(out.glob("*.png")))
    for flags in (["--report"], [], []):
        assert main(["predict", str(run), str(out), "--out", str(out), "--device", "cpu", *flags]) == 0
        rows = json.loads((out / "predictions.json").read_text())["predictions"]
        assert len(rows) == n and all(Path(r["path"]).parent == out for r in rows)  # no thumbnail read back
    assert (out / "report" / "img" / "0000_input.png").is_file()  # the first run's, still listed as ours
    assert "report/img/0000_input.png" in json.loads((out / "predictions.json").read_text())["outputs"]


def test_a_predictions_file_and_hidden_files_of_the_users_are_kept(run, test_folder, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "predictions.json").write_text('{"mine": true}')
    (out / ".notes.tmp").write_text("x")  # a hidden file ending in .tmp, not an atomic write's leftover
    argv = ["predict", str(run), str(test_folder / "hole"), "--out", str(out), "--device", "cpu"]
    assert main(argv) == 2
    assert "not written by `cavga predict`" in capsys.readouterr().err
    assert (out / "predictions.json").read_text() == '{"mine": true}'
    (out / "predictions.json").unlink()
    assert main(argv) == 0 and (out / ".notes.tmp").read_text() == "x"


def test_an_input_with_a_name_near_the_file_systems_limit_is_predicted(run, test_folder, tmp_path):
    folder = tmp_path / "long"
    folder.mkdir()
    name = "名" * 82 + ".png"  # 250 bytes of UTF-8: an allowed name, too long with "_overlay.png" added
    shutil.copy(next((test_folder / "hole").glob("*.png")), folder / name)
    assert main(["predict", str(run), str(folder), "--out", str(tmp_path / "out"), "--device", "cpu"]) == 0
    (row,) = json.loads((tmp_path / "out" / "predictions.json").read_text())["predictions"]
    assert all((tmp_path / "out" / row[k]).is_file() for k in ("overlay", "mask", "map"))
    assert len(row["overlay"].encode()) <= 255 and row["overlay"].startswith("名" * 70)


def test_the_reports_thumbnail_of_a_16_bit_image_is_not_white(run, tmp_path):
    folder = tmp_path / "deep"
    folder.mkdir()
    grey = (np.linspace(0, 30000, 32 * 32).reshape(32, 32)).astype(np.uint16)  # dark: up to 46% of 65535
    Image.fromarray(grey).save(folder / "a.png")
    out = tmp_path / "out"
    assert main(["predict", str(run), str(folder), "--out", str(out), "--device", "cpu", "--report"]) == 0
    thumb = np.asarray(Image.open(out / "report" / "img" / "0000_input.png"), dtype=np.float64)
    assert abs(thumb.mean() - 255 * 15000 / 65535) < 3  # what cavga's reader makes of it, not PIL's clipping


def test_a_turned_photo_is_predicted_upright_as_its_viewer_shows_it(run, test_folder, tmp_path):
    """An image stored sideways with EXIF orientation 6 gets the map, mask and overlay of the same
    image stored upright: its viewer's shape and pixels, not the stored ones."""
    upright = Image.open(next(iter(sorted((test_folder / "hole").glob("*.png"))))).convert("RGB")
    upright = upright.resize((upright.width, upright.height * 3 // 2))  # portrait, so a quarter turn shows
    folder = tmp_path / "in"
    folder.mkdir()
    upright.save(folder / "a_upright.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # "turn 90 degrees clockwise to display"
    upright.transpose(Image.Transpose.ROTATE_90).save(folder / "b_turned.png", exif=exif)
    out = tmp_path / "out"
    assert main(["predict", str(run), str(folder), "--out", str(out), "--device", "cpu", "--maps", "npy"]) == 0
    a, b = json.loads((out / "predictions.json").read_text())["predictions"]
    assert Path(b["path"]).name == "b_turned.png" and b["score"] == pytest.approx(a["score"], abs=1e-5)
    ma, mb = np.load(out / a["map"]), np.load(out / b["map"])
    assert mb.shape == (upright.height, upright.width) and np.allclose(ma, mb, atol=1e-5)
    for k in ("mask", "overlay"):
        assert np.array_equal(np.asarray(Image.open(out / a[k])), np.asarray(Image.open(out / b[k])))


def _srcs(page: Path) -> list[str]:
    class Imgs(HTMLParser):
        def __init__(self):
            super().__init__()
            self.srcs = []

        def handle_starttag(self, tag, attrs):
            if tag == "img":
                self.srcs.append(dict(attrs)["src"])

    parser = Imgs()
    parser.feed(page.read_text())
    return parser.srcs


def test_report_links_to_names_with_url_characters_find_their_files(run, test_folder, tmp_path):
    folder = tmp_path / "odd"
    folder.mkdir()
    for name in ("a#1.png", "b?x.png", "c%41.png"):
        shutil.copy(next((test_folder / "hole").glob("*.png")), folder / name)
    out = tmp_path / "out"
    assert main(["predict", str(run), str(folder), "--out", str(out), "--device", "cpu", "--report"]) == 0
    srcs = _srcs(out / "report" / "index.html")
    assert len(srcs) == 9 and not any("#" in s or "?" in s for s in srcs)
    assert all((out / "report" / unquote(s)).is_file() for s in srcs)  # as a browser reads the link


def test_a_rerun_without_report_removes_the_earlier_page_only(run, test_folder, tmp_path):
    out = tmp_path / "out"
    argv = ["predict", str(run), str(test_folder / "hole"), "--out", str(out), "--device", "cpu"]
    assert main([*argv, "--report"]) == 0
    page = out / "report" / "index.html"
    assert page.is_file()
    assert main(argv) == 0  # its overlays now hold new results: the page listing the old ones goes
    assert not page.exists() and (out / "report" / "img" / "0000_input.png").is_file()
    assert "report/index.html" not in json.loads((out / "predictions.json").read_text())["outputs"]


def test_the_predict_page_states_the_colour_scale_and_the_mask_rule(run, test_folder, tmp_path):
    out = tmp_path / "out"
    argv = ["predict", str(run), str(test_folder / "hole"), "--out", str(out), "--device", "cpu", "--report"]
    assert main([*argv, "--set", "infer.mask_gate=none"]) == 0
    text = (out / "report" / "index.html").read_text()
    legend = text.split('id="colour-legend"')[1].split("</p>")[0]
    t = json.loads((out / "predictions.json").read_text())["mask_threshold"]
    assert "fixed scale" in legend and f"{t:.4g}" in legend and "shown whatever the verdict" in legend
    assert "repeat(3, 1fr)" in text  # three panels, three columns
    assert text.count('class="maskpanel"') == len(_srcs(out / "report" / "index.html")) // 3  # a framed mask


def _outputs(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*_*.png"))


def test_a_stopped_predict_lists_what_it_wrote_and_a_rerun_replaces_it(run, test_folder, tmp_path):
    """Ctrl-C after two images: predictions.json lists those two; the same command again writes each
    image's files once, under the same names, with no "_1" copies beside them."""
    images = sorted((test_folder / "hole").glob("*.png"))[:4]
    folder = tmp_path / "in"
    folder.mkdir()
    for p in images:
        shutil.copy(p, folder / p.name)
    out = tmp_path / "out"

    def stop_after_two(row):
        if row["overlay"].startswith(images[1].stem):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        predict_to_folder(run, [folder], out, "cpu", on_result=stop_after_two)
    saved = json.loads((out / "predictions.json").read_text())
    assert [Path(r["path"]).name for r in saved["predictions"]] == [p.name for p in images[:2]]
    assert main(["predict", str(run), str(folder), "--out", str(out), "--device", "cpu"]) == 0
    assert _outputs(out) == sorted(f"{p.stem}_{k}.png" for p in images for k in ("overlay", "mask", "map"))
    assert not (out / JOURNAL_FILE).exists()  # predictions.json lists them all now


def test_a_predict_killed_between_saves_leaves_its_files_known_as_its_own(run, test_folder, tmp_path):
    """kill -9 (no save at all) with --out the input folder: the rerun neither reads the killed run's
    overlays as images nor writes "_1" copies beside them."""
    folder = tmp_path / "in"
    folder.mkdir()
    images = sorted((test_folder / "hole").glob("*.png"))[:3]
    for p in images:
        shutil.copy(p, folder / p.name)
    code = (
        "import os, sys; from cavga.predict import predict_to_folder\n"
        "predict_to_folder(sys.argv[1], [sys.argv[2]], sys.argv[2], 'cpu', on_result=lambda row: os._exit(9))"
    )
    killed = subprocess.run([sys.executable, "-c", code, str(run), str(folder)], capture_output=True)
    assert killed.returncode == 9 and not (folder / "predictions.json").exists()
    assert len(_outputs(folder)) == 3 and (folder / JOURNAL_FILE).is_file()  # one image's files, unlisted
    assert main(["predict", str(run), str(folder), "--out", str(folder), "--device", "cpu"]) == 0
    saved = json.loads((folder / "predictions.json").read_text())
    assert sorted(Path(r["path"]).name for r in saved["predictions"]) == [p.name for p in images]
    assert _outputs(folder) == sorted(f"{p.stem}_{k}.png" for p in images for k in ("overlay", "mask", "map"))
