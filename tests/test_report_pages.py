"""The run page says what its pictures show, as evaluate scored them; a failed build keeps the old page."""

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from _tiny_run import shared_run
from cavga.benchmark import _write as write_benchmark_tables
from cavga.cli import main
from cavga.report import plots, run_report, write_run_report
from cavga.report.gallery import native_mask, write_panels
from cavga.report.scores import load_map16
from test_report import Tags


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return shared_run(tmp_path_factory)


def _cards(folder: Path) -> list[dict]:
    """Each gallery card of ``folder``'s page: its attributes, IoU values and panel files."""
    text = (folder / "report" / "index.html").read_text()
    cards = []
    for chunk in text.split('<div class="card')[1:]:
        card = chunk.split('<div class="card')[0]
        tags = Tags("<div " + card.split(" ", 1)[1])
        cards.append(
            {
                **tags.tags[0][1],
                "iou": [float(v) for v in re.findall(r">IoU (\d+\.\d+)<", card)],  # as the card shows it
                "ungated": [float(a["data-value"]) for a in tags.find("span", **{"class": "iou-ungated"})],
                "panels": {a["src"].rsplit("_", 1)[1][:-4]: folder / "report" / a["src"] for a in tags.find("img")},
                "text": card,
            }
        )
    return cards


def _copy(run: Path, folder: Path, verdicts=None) -> Path:
    shutil.copytree(run, folder)
    if verdicts is not None:  # scores.json's verdicts replaced: each image's by verdicts(index, label)
        scores = json.loads((folder / "scores.json").read_text())
        for im in scores["images"]:
            im["verdict"] = verdicts(im["index"], im["label"])
            im["iou"] = None if im["iou"] is None else 0.5  # the tiny run's are all near 0
        (folder / "scores.json").write_text(json.dumps(scores))
    return folder


def test_a_cards_iou_is_that_of_its_gated_mask_panel_and_names_the_ungated_one(run, tmp_path):
    """Gated (infer.mask_gate: verdict), an anomalous image judged normal shows an empty mask: its card
    says IoU 0, as metrics.json's iou_gated counts it, and gives the ungated IoU (``iou``) by name."""
    folder = _copy(run, tmp_path / "r", verdicts=lambda i, label: label if i % 2 else 0)
    write_run_report(folder)
    scores = {im["index"]: im for im in json.loads((folder / "scores.json").read_text())["images"]}
    emptied = 0
    for card in _cards(folder):
        im = scores[int(card["panels"]["input"].name[:4])]
        flagged = np.asarray(Image.open(card["panels"]["pred"])).any()
        if im["iou"] is None:
            assert card["iou"] == [] and card["ungated"] == []
        elif im["verdict"]:
            assert card["iou"] == [0.5] and card["ungated"] == []
        else:  # the gate emptied the mask shown beside it
            emptied += 1
            assert not flagged and card["iou"] == [0.0] and card["ungated"] == [0.5]
            assert "mask emptied by the normal verdict" in card["text"]
    assert emptied >= 2


def test_the_mask_panel_is_the_mask_evaluate_scored_with_a_minimum_area(run, tmp_path, monkeypatch):
    """infer.mask_min_area drops small regions from the scored mask; the panel drops them too, so the
    IoU of the panel against the true-mask panel (both at the 48 px images' own size) is the card's."""
    import cavga.inference as inference

    def two_regions(model, x, *read):  # the top half and a 3 x 3 speck, at the model's 32 px
        amap = torch.full((x.shape[0], 1, 32, 32), 0.1)
        amap[:, :, :16] = amap[:, :, 27:30, 27:30] = 0.9
        return amap, x, None

    monkeypatch.setattr(inference, "anomaly_evidence", two_regions)
    folder = _copy(run, tmp_path / "r")
    argv = ["evaluate", str(folder), "--device", "cpu", "--no-progress", "--set", "infer.mask_gate=none"]
    for setting in ("mask_quantile=null", "mask_threshold=0.5", "mask_peak_fraction=0", "map_blur=0"):
        argv += ["--set", f"infer.{setting}"]
    assert main([*argv, "--set", "infer.mask_min_area=0.05"]) == 0
    scores = json.loads((folder / "scores.json").read_text())
    by_index, thresholds = {im["index"]: im for im in scores["images"]}, scores["thresholds"]
    ious, dropped = [], 0
    for card in _cards(folder):
        im = by_index[int(card["panels"]["input"].name[:4])]
        pred = np.asarray(Image.open(card["panels"]["pred"])) > 127
        whole = native_mask(load_map16(folder / im["map"]), (48, 48), {**thresholds, "mask_min_area": 0.0}, 1)
        dropped += int(whole.sum() > pred.sum() > 0)  # the speck left out, the half kept
        if im["iou"] is None:
            continue
        true = np.asarray(Image.open(card["panels"]["true"])) > 127
        assert pred.shape == true.shape == (48, 48)  # thumbnails of 48 px images are the images' size
        assert (pred & true).sum() / max((pred | true).sum(), 1) == pytest.approx(im["iou"], abs=1e-9)
        ious.append(im["iou"])
    assert dropped == len(by_index) and len(ious) >= 4 and max(ious) > 0
    assert "mask min area" in (folder / "report" / "index.html").read_text()  # the thresholds table says it


def test_a_missing_test_image_gets_a_placeholder_card_naming_it(run, tmp_path):
    folder = _copy(run, tmp_path / "r")
    scores = json.loads((folder / "scores.json").read_text())
    gone = str(tmp_path / "moved" / "000.png")
    scores["images"][0]["path"] = gone
    (folder / "scores.json").write_text(json.dumps(scores))
    assert main(["report", str(folder)]) == 0
    cards = _cards(folder)
    (missing,) = [c for c in cards if 'class="missing"' in c["text"]]
    assert gone in missing["text"] and missing["panels"] == {}
    assert all(len(c["panels"]) == 4 and all(p.is_file() for p in c["panels"].values()) for c in cards if c != missing)


def test_a_failed_report_leaves_the_earlier_page_and_its_thumbnails(run, tmp_path, monkeypatch):
    folder = _copy(run, tmp_path / "r")
    before = {p: p.read_bytes() for p in (folder / "report").rglob("*") if p.is_file()}
    beside = sorted(p.name for p in folder.iterdir())
    calls = []

    def broken(*args, **kwargs):  # the third card's thumbnails fail (a full disk, say)
        calls.append(args)
        if len(calls) == 3:
            raise RuntimeError("disk full")
        return write_panels(*args, **kwargs)

    monkeypatch.setattr(run_report, "write_panels", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        write_run_report(folder)
    assert {p: p.read_bytes() for p in (folder / "report").rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in folder.iterdir()) == beside  # nothing half-built left beside it


def test_the_page_states_the_fixed_colour_scale_and_the_mask_rule(run):
    text = (run / "report" / "index.html").read_text()
    legend = text.split('id="colour-legend"')[1].split("</p>")[0]
    t = json.loads((run / "scores.json").read_text())["thresholds"]
    assert "fixed scale" in legend and "not stretched" in legend and "linear-gradient" in legend
    assert f"{t['mask']:.4g}" in legend and "empty where the verdict is normal" in legend


def test_svg_figures_are_byte_reproducible(tmp_path):
    for name in ("a.svg", "b.svg"):
        plots.write_svg(plots.roc_figure([0, 0.5, 1], [0, 0.8, 1], 0.7), tmp_path / name)
    assert (tmp_path / "a.svg").read_bytes() == (tmp_path / "b.svg").read_bytes()


def test_the_benchmark_tables_say_what_their_wall_time_covers(run, tmp_path):
    result = json.loads((run / "metrics.json").read_text())
    result["wall_seconds"] = {"train_this_call": 0.2, "total": 3.5, "resumed": True}
    write_benchmark_tables(tmp_path, [result])
    for text in ((tmp_path / "results.md").read_text(), (tmp_path / "report.html").read_text()):
        assert "wall this call, train + evaluate (s)" in text and "3.5 (resumed)" in text
