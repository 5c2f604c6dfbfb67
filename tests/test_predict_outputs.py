"""`cavga predict` output a user can build on: raw maps at the image's size, mirrored folders, a gallery page."""

import json
import shutil
from html.parser import HTMLParser

import numpy as np
import pytest
from PIL import Image

from _tiny_run import shared_data, shared_run
from cavga.cli import main
from cavga.inference import Predictor


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
