"""The run page says what its pictures show, as evaluate scored them; a failed build keeps the old page."""

import json
import os
import re
import shutil
from pathlib import Path
from urllib.parse import unquote_to_bytes

import numpy as np
import pytest
import torch
from PIL import Image

from _errors import one_line_error
from _tiny_run import make_data, make_evaluated_run, shared_run
from cavga.benchmark import _write as write_benchmark_tables
from cavga.cli import main
from cavga.report import plots, run_report, write_benchmark_report, write_run_report
from cavga.report.gallery import native_mask, write_panels
from cavga.report.scores import load_map16
from test_report import Tags

LATIN1 = b"caf\xe9"  # Latin-1 bytes, not UTF-8: Python holds the name as "caf\udce9"


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


def _latin1_names_or_skip(folder: Path) -> None:
    """Skip where the file system refuses a file name that is not UTF-8 (macOS's APFS, some shares)."""
    probe = os.fsencode(folder) + b"/" + LATIN1
    try:
        os.mkdir(probe)
        os.rmdir(probe)
    except OSError:
        pytest.skip("this file system refuses file names that are not UTF-8")


def test_a_file_name_that_is_not_utf8_gets_its_cards_and_links(tmp_path):
    """A test image and its mask named in Latin-1: evaluate, report and predict --report write their
    pages (UTF-8), which show the name with U+FFFD and link to the file's real bytes."""
    _latin1_names_or_skip(tmp_path)
    brick = os.fsencode(make_data(tmp_path / "data") / "brick")
    image = brick + b"/test/hole/" + LATIN1 + b".png"
    os.rename(brick + b"/test/hole/000.png", image)
    os.rename(brick + b"/ground_truth/hole/000_mask.png", brick + b"/ground_truth/hole/" + LATIN1 + b"_mask.png")
    run = make_evaluated_run(tmp_path / "data", tmp_path / "run")  # evaluate writes the page
    assert main(["report", str(run)]) == 0
    page = (run / "report" / "index.html").read_bytes().decode("utf-8")  # strictly: no stray bytes
    (card,) = [c for c in _cards(run) if c["data-name"] == "hole/caf\ufffd.png"]
    assert sorted(card["panels"]) == ["input", "overlay", "pred", "true"]  # the mask was found and drawn
    assert all(p.is_file() for p in card["panels"].values()) and "\\udc" not in page  # nor in its JSON

    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(image, os.fsencode(folder) + b"/" + LATIN1 + b".png")
    out = tmp_path / "out"
    assert main(["predict", str(run), str(folder), "--out", str(out), "--device", "cpu", "--report"]) == 0
    page = (out / "report" / "index.html").read_bytes().decode("utf-8")
    links = [a["src"] for a in Tags(page).find("img") if "caf" in a["src"]]
    assert links == ["../caf%E9_overlay.png", "../caf%E9_mask.png"]
    assert all(os.path.isfile(os.fsencode(out / "report") + b"/" + unquote_to_bytes(s)) for s in links)
    assert 'data-name="caf\ufffd"' in page

    os.remove(image)  # moved since evaluate: a placeholder card naming it
    assert main(["report", str(run)]) == 0
    (card,) = [c for c in _cards(run) if c["data-name"] == "hole/caf\ufffd.png"]
    assert 'class="missing"' in card["text"] and "caf\ufffd.png: image file not found" in card["text"]


def test_the_benchmark_page_links_a_run_whose_name_is_not_utf8(tmp_path):
    """A run folder named in Latin-1: the benchmark page links to its real bytes."""
    _latin1_names_or_skip(tmp_path)
    report = os.fsencode(tmp_path) + b"/" + LATIN1 + b"/report"
    os.makedirs(report)
    with open(report + b"/index.html", "w") as f:
        f.write("<p>a run's page</p>")
    page_path = write_benchmark_report(tmp_path, [{"model": "m", "run": os.fsdecode(report[:-7]), "metrics": {}}])
    (link,) = [a["href"] for a in Tags(page_path.read_bytes().decode("utf-8")).find("a")]
    assert link == "caf%E9/report/index.html"
    assert os.path.isfile(os.fsencode(tmp_path) + b"/" + unquote_to_bytes(link))


def test_the_pages_json_shows_a_name_that_is_not_utf8_as_the_page_does():
    from cavga.report.render import _json

    assert json.loads(_json({"name": os.fsdecode(LATIN1 + b".png")})) == {"name": "caf\ufffd.png"}


def test_a_report_of_an_evaluation_stopped_midway_is_refused_until_evaluated_again(run, tmp_path, monkeypatch, capsys):
    """An evaluate stopped midway (Ctrl-C) leaves its new maps under the earlier scores.json: the report
    refuses them in one line naming maps/ and saying to evaluate again; a finished evaluate clears it,
    and a run evaluated before the id (in neither file) is read as before."""
    import cavga.evaluate as evaluate
    from cavga.report.scores import save_map16

    folder = _copy(run, tmp_path / "r")
    written = []

    def stopped(amap, path):  # Ctrl-C while the fourth map is written
        if len(written) == 3:
            raise KeyboardInterrupt
        written.append(path)
        return save_map16(amap, path)

    monkeypatch.setattr(evaluate, "save_map16", stopped)
    argv = ["evaluate", str(folder), "--device", "cpu", "--no-progress"]
    assert main([*argv, "--set", "infer.attention_direction=inverse"]) == 130
    assert len(written) == 3
    capsys.readouterr()
    assert main(["report", str(folder)]) == 2
    one_line_error(capsys, folder / "maps", "different evaluations", f"cavga evaluate {folder}` again")
    monkeypatch.undo()
    assert main(argv) == 0 and main(["report", str(folder)]) == 0

    scores = json.loads((folder / "scores.json").read_text())  # as evaluate wrote it before the id
    del scores["evaluation"]
    (folder / "scores.json").write_text(json.dumps(scores))
    (folder / "maps" / ".evaluation").unlink()
    assert main(["report", str(folder)]) == 0


def _set(key, value):
    return lambda d: d.update({key: value})


def _image(key, value):
    return lambda s: s["images"][2].update({key: value})


HAND_EDITED = [  # (file, an edit of its content in place, the field the one line names)
    ("metrics.json", lambda m: m.clear(), "metrics must be a mapping"),
    ("metrics.json", _set("metrics", "x"), "metrics must be a mapping"),
    ("metrics.json", lambda m: m["metrics"].update(image_auroc="high"), "metrics.image_auroc"),
    ("scores.json", _set("thresholds", "x"), "thresholds must be a mapping"),
    ("scores.json", lambda s: s["roc"]["tpr"].pop(), "roc.tpr"),
    ("scores.json", _image("label", "x"), "images[2].label"),
    ("scores.json", _image("score", "x"), "images[2].score"),
    ("scores.json", _image("raw_score", None), "images[2].raw_score"),
    ("scores.json", _image("path", 3), "images[2].path"),
    ("scores.json", _image("map", "../checkpoint.pt"), "images[2].map"),
]


def test_hand_edited_or_foreign_files_of_evaluate_are_one_line_errors(run, tmp_path, capsys):
    """metrics.json, scores.json or a map that evaluate did not write as they are (edited by hand, a
    map saved again as RGB) is refused in one line naming the file and the field, never a traceback."""
    folder = _copy(run, tmp_path / "r")
    (folder / "metrics.json").write_text("[]")  # not even a mapping
    assert main(["report", str(folder)]) == 2
    one_line_error(capsys, folder / "metrics.json", "must be a mapping", f"cavga evaluate {folder}` again")
    shutil.copy(run / "metrics.json", folder / "metrics.json")
    for name, edit, field in HAND_EDITED:
        path = folder / name
        before = path.read_text()
        content = json.loads(before)
        edit(content)
        path.write_text(json.dumps(content))
        assert main(["report", str(folder)]) == 2, (name, field)
        one_line_error(capsys, path, field, f"cavga evaluate {folder}` again")
        path.write_text(before)
    amap = folder / "maps" / "0000.png"
    for mode in ("RGB", "L"):  # a map saved again in colour, or at 8 bits (its values would read 256 times too low)
        Image.new(mode, (32, 32)).save(amap)
        assert main(["report", str(folder)]) == 2
        one_line_error(capsys, amap, f"mode {mode}", "16-bit grey", f"cavga evaluate {folder}` again")
    amap.unlink()  # a map gone is a placeholder card, as a moved test image is
    assert main(["report", str(folder)]) == 0
    assert sum('class="missing"' in c["text"] for c in _cards(folder)) == 1
    check = folder / "validation.json"  # the painted check the page shows beside the test metrics
    before = check.read_text()
    for spoiled in ('{"metrics": "x", "protocol": "p"}', "[1]", '{"metrics": {"iou": "high"}, "protocol": "p"}'):
        check.write_text(spoiled)
        assert main(["report", str(folder)]) == 2
        one_line_error(capsys, check, "not the painted-defect check", f"cavga validate {folder}` again")
    check.write_text(before)
    assert main(["report", str(folder)]) == 0
