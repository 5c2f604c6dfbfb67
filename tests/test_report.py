"""The HTML report: its content is checked against the files evaluate wrote (metrics.json, scores.json)."""

import json
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from _by_hand import conformal_by_hand
from _tiny_run import shared_run
from cavga.cli import main
from cavga.inference import Predictor
from cavga.metrics import aupro, pro_curve
from cavga.report import write_benchmark_report, write_run_report
from cavga.report.plots import score_histogram
from cavga.report.run_report import error_of
from cavga.report.scores import load_map16, save_map16, thin
from cavga.runfolder import RunData
from cavga.visualize import comparison_strip


class Tags(HTMLParser):
    """Every start tag of a page, in order, as (tag, attrs)."""

    def __init__(self, text: str):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def find(self, tag=None, **attrs):
        return [a for t, a in self.tags if (tag is None or t == tag) and all(a.get(k) == v for k, v in attrs.items())]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return shared_run(tmp_path_factory)


def _page(run):
    text = (run / "report" / "index.html").read_text()
    return text, Tags(text)


def test_every_test_image_appears_with_its_panels(run):
    text, page = _page(run)
    test = RunData.load(run).test
    cards = page.find("div", **{})  # all divs; keep the gallery cards
    cards = [a for a in cards if "data-score" in a]
    names = sorted(f"{Path(r.image_path).parent.name}/{Path(r.image_path).name}" for r in test)
    assert sorted(c["data-name"] for c in cards) == names
    imgs = [a["src"] for a in page.find("img") if a["src"].startswith("img/")]
    assert len(imgs) == 4 * len(test)  # the demo's defects all have masks; good ones get an empty mask
    for src in imgs:
        assert (run / "report" / src).is_file(), src
    for fig in ("histogram.svg", "roc.svg", "pro.svg"):
        assert page.find("img", src=fig) and (run / "report" / fig).is_file()
    assert "<script src" not in text and "http://" not in text and "https://" not in text  # self-contained


def test_gallery_puts_the_worst_misses_and_false_alarms_first(run):
    _, page = _page(run)
    cards = [a for a in page.find("div") if "data-score" in a]
    errors = [float(c["data-error"]) for c in cards]
    assert errors == sorted(errors, reverse=True)
    scores = json.loads((run / "scores.json").read_text())
    t = scores["thresholds"]["score"]
    by_name = {f"{Path(im['path']).parent.name}/{Path(im['path']).name}": im for im in scores["images"]}
    for c in cards:
        im = by_name[c["data-name"]]
        assert float(c["data-error"]) == pytest.approx(error_of(im["score"], im["label"], t), abs=1e-6)
        wrong = (im["score"] >= t) != bool(im["label"])
        assert c["data-kind"] in (("FN", "FP") if wrong else ("TP", "TN"))
    assert error_of(0.2, 1, 0.5) == pytest.approx(0.3) and error_of(0.2, 0, 0.5) == pytest.approx(-0.3)


def test_the_numbers_equal_metrics_json(run):
    _, page = _page(run)
    metrics = json.loads((run / "metrics.json").read_text())
    rows = page.find("td", **{"class": "value"})
    keys = [a["data-metric"] for a in page.find("tr") if "data-metric" in a]
    assert keys == ["image_auroc", "pixel_auroc", "iou", "detection_accuracy", "aupro", "f1_max", "iou_gated",
                    "normal_flagged", "normal_flagged_gated"]  # fmt: skip
    for key, cell in zip(keys, rows, strict=True):
        assert float(cell["data-value"]) == metrics["metrics"][key]
    embedded = json.loads(_page(run)[0].split('id="report-data">')[1].split("</script>")[0])
    assert embedded["metrics"] == {k: metrics["metrics"][k] for k in keys}


def test_the_painted_defect_check_stands_beside_the_test_numbers_when_the_run_has_one(run, tmp_path):
    import shutil

    _, page = _page(run)
    checked = json.loads((run / "validation.json").read_text())["metrics"]  # cavga train's check
    cells = page.find("td", **{"class": "painted"})
    assert [float(c["data-value"]) for c in cells] == [
        checked[k] for k in ("image_auroc", "pixel_auroc", "iou", "detection_accuracy", "aupro", "f1_max",
                             "iou_gated", "normal_flagged", "normal_flagged_gated")
    ]  # fmt: skip
    older = tmp_path / "older"  # a run without the check (from before it, or --no-check): no such column
    shutil.copytree(run, older)
    (older / "validation.json").unlink()
    write_run_report(older)
    assert not Tags((older / "report" / "index.html").read_text()).find("td", **{"class": "painted"})


def test_the_gallery_shows_masks_only_on_anomalous_verdicts_unless_the_gate_is_off(run, tmp_path):
    import shutil

    def pred_masks(gate):
        """Each gallery card's verdict and whether its predicted-mask thumbnail flags any pixel, for the
        run's evaluation with the mask threshold at 0 (every pixel at or above it), every verdict
        right, and ``mask_gate``."""
        folder = tmp_path / gate
        shutil.copytree(run, folder)
        scores = json.loads((folder / "scores.json").read_text())
        scores["thresholds"].update(mask=0.0, mask_gate=gate)
        for im in scores["images"]:  # verdicts of both kinds (the tiny run's may all be one)
            im["verdict"] = im["label"]
        (folder / "scores.json").write_text(json.dumps(scores))
        write_run_report(folder)
        page = Tags((folder / "report" / "index.html").read_text())
        cards = [a for a in page.find("div") if "data-score" in a]
        preds = [a["src"] for a in page.find("img") if a["src"].endswith("_pred.png")]
        verdict = {"TP": "anomalous", "FP": "anomalous", "TN": "normal", "FN": "normal"}
        return [(verdict[c["data-kind"]], np.asarray(Image.open(folder / "report" / p)).any())
                for c, p in zip(cards, preds, strict=True)]  # fmt: skip

    assert json.loads((run / "scores.json").read_text())["thresholds"]["mask_gate"] == "verdict"
    gated, shown = pred_masks("verdict"), pred_masks("none")
    assert {v for v, _ in gated} == {"normal", "anomalous"}
    assert all(flagged == (verdict == "anomalous") for verdict, flagged in gated)
    assert all(flagged for _, flagged in shown)


def test_threshold_is_drawn_at_the_stored_value(run):
    _, page = _page(run)
    metrics = json.loads((run / "metrics.json").read_text())
    scores = json.loads((run / "scores.json").read_text())
    n = metrics["score_normalizer"]  # the run's image score's (auto: decided at training's end)
    by_hand = n["lo"] + 2 * (n["hi"] - n["lo"]) * metrics["thresholds"]["score"]  # inverse of the normaliser
    drawn = float(page.find("figure", id="histogram")[0]["data-threshold"])
    assert drawn == pytest.approx(by_hand, rel=1e-12) and scores["thresholds"]["raw_score"] == drawn
    for im in scores["images"]:  # the raw threshold separates the verdicts exactly as the normalised one
        if abs(im["raw_score"] - drawn) > 1e-9:
            assert im["verdict"] == int(im["raw_score"] >= drawn)
    assert 'id="threshold"' in (run / "report" / "histogram.svg").read_text()
    # the held-out normal scores it was fitted on are the normaliser's
    held = Predictor.from_run(run, "cpu").score_normalizer.scores
    assert scores["held_out_raw_scores"] == held and min(held) == pytest.approx(n["lo"])


def test_histogram_draws_the_line_where_asked():
    fig = score_histogram([0.1, 0.2], [0.5, 0.7], [0.1, 0.15], 0.42, "raw")
    (line,) = [ln for ln in fig.axes[0].lines if ln.get_gid() == "threshold"]
    assert list(line.get_xdata()) == [0.42, 0.42]


def test_scores_json_holds_maps_and_curves_matching_the_metrics(run):
    scores = json.loads((run / "scores.json").read_text())
    metrics = json.loads((run / "metrics.json").read_text())["metrics"]
    roc, pro = scores["roc"], scores["pro"]
    assert np.trapezoid(roc["tpr"], roc["fpr"]) == pytest.approx(metrics["image_auroc"], abs=1e-6)
    assert np.trapezoid(pro["pro"], pro["fpr"]) / 0.3 == pytest.approx(metrics["aupro"], abs=1e-5)
    test = RunData.load(run).test
    pred = Predictor.from_run(run, "cpu").predict_paths([r.image_path for r in test[:3]])
    for im, p in zip(scores["images"][:3], pred, strict=True):
        assert im["raw_score"] == pytest.approx(p.raw_score, abs=1e-6)
        amap = load_map16(run / im["map"])  # model resolution (32 px); the image is 48 px
        assert amap.shape == (32, 32)
        batch = Predictor.from_run(run, "cpu").predict_batch(torch.stack([_load(im["path"])]))
        assert np.abs(amap - batch.anomaly_map[0].numpy()).max() <= 0.5 / 65535 + 1e-7


def _load(path):
    from cavga.data import load_image

    return load_image(path, 32)


def test_per_defect_rows_from_the_scores(run):
    _, page = _page(run)
    metrics = json.loads((run / "metrics.json").read_text())
    scores = json.loads((run / "scores.json").read_text())["images"]
    text = (run / "report" / "index.html").read_text()
    for d, v in metrics["per_defect_iou"].items():
        row = text.split(f'<tr data-defect="{d}">')[1].split("</tr>")[0]
        sel = [im for im in scores if im["defect"] == d]
        flagged = np.mean([im["verdict"] for im in sel])
        assert f"<td>{len(sel)}</td><td>{flagged:.2f}</td>" in row and row.endswith(f"<td>{v:.3f}</td>")


def test_report_needs_no_model_and_says_what_is_missing(run, tmp_path, monkeypatch, capsys):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    shutil.rmtree(copy / "report")
    (copy / "checkpoint.pt").unlink()  # the report never loads the model
    assert main(["report", str(copy)]) == 0
    assert (copy / "report" / "index.html").is_file()
    (copy / "scores.json").unlink()
    assert main(["report", str(copy)]) == 2
    err = capsys.readouterr().err
    assert "scores.json" in err and "cavga evaluate" in err and err.count("\n") == 1


def test_benchmark_page_links_each_run_and_shows_the_paper(run, tmp_path):
    result = json.loads((run / "metrics.json").read_text())
    page_path = write_benchmark_report(tmp_path, [result], {"CAVGA-Du": {"iou": 0.47, "pixel_auroc": 0.89}})
    page = Tags(page_path.read_text())
    (link,) = [a["href"] for a in page.find("a")]
    assert (tmp_path / link).resolve() == (run / "report" / "index.html").resolve()
    cells = {a["data-key"]: a["data-value"] for a in page.find("td") if "data-key" in a}
    assert float(cells["iou"]) == result["metrics"]["iou"]
    text = page_path.read_text()
    assert "(0.47)" in text and "(0.89)" in text


def test_write_run_report_is_repeatable(run):
    first = sorted(p.name for p in (run / "report" / "img").iterdir())
    write_run_report(run)
    assert sorted(p.name for p in (run / "report" / "img").iterdir()) == first


def test_a_rebuild_keeps_the_users_files_and_drops_only_what_a_build_wrote(run, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    report = copy / "report"
    write_run_report(copy)
    built = json.loads((report / ".written.json").read_text())
    assert "index.html" in built and any(n.startswith("img/") for n in built)
    (report / "notes.txt").write_text("mine")
    (report / "img" / "circled.png").write_bytes(b"mine too")
    (report / "img" / "9999_stale.png").write_bytes(b"an earlier build's")
    (report / "histogram.svg").write_text("the user's own")  # a name the next build writes too
    listed = [n for n in built if n != "histogram.svg"] + ["img/9999_stale.png"]
    (report / ".written.json").write_text(json.dumps(listed))
    write_run_report(copy)
    assert (report / "notes.txt").read_text() == "mine"
    assert (report / "img" / "circled.png").read_bytes() == b"mine too"
    assert (report / "histogram.yours.svg").read_text() == "the user's own"
    assert (report / "histogram.svg").read_text().lstrip().startswith("<?xml")
    assert not (report / "img" / "9999_stale.png").exists()  # an earlier build's file the new one did not write


def test_a_report_built_before_the_list_keeps_the_users_files_too(run, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    report = copy / "report"
    write_run_report(copy)
    (report / ".written.json").unlink()  # as session 70's builds left it
    (report / "notes.txt").write_text("mine")
    (report / "img" / "0000_old_thumbnail.png").write_bytes(b"a build's")
    write_run_report(copy)
    assert (report / "notes.txt").read_text() == "mine"
    assert not (report / "img" / "0000_old_thumbnail.png").exists()


def test_a_swap_killed_between_its_renames_gets_the_earlier_report_back(run, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    write_run_report(copy)
    (copy / "report" / "notes.txt").write_text("mine")
    (copy / "report").rename(copy / ".report.old")  # killed after the first rename, before the second
    write_run_report(copy)
    assert (copy / "report" / "notes.txt").read_text() == "mine" and (copy / "report" / "index.html").is_file()
    assert not (copy / ".report.old").exists() and not (copy / ".report.new").exists()


def test_map16_round_trip_and_thinning(tmp_path):
    a = np.linspace(0, 1, 12, dtype=np.float32).reshape(3, 4)
    save_map16(a, tmp_path / "m.png")
    assert Image.open(tmp_path / "m.png").mode.startswith("I;16")
    assert np.abs(load_map16(tmp_path / "m.png") - a).max() <= 0.5 / 65535 + 1e-7
    x, y = thin(np.arange(1000.0), np.arange(1000.0) ** 2, n=50)
    assert len(x) <= 50 and x[0] == 0 and x[-1] == 999 and y[-1] == 999.0**2


def test_pro_curve_by_hand():
    # one region of 2 pixels scoring 0.9 and 0.5; normal pixels 0.7, 0.1 -> points after 0.9, 0.7, 0.5, 0.1
    amap = np.array([[[0.9, 0.5, 0.7, 0.1]]])  # (1, 1, 4)
    mask = np.array([[[1, 1, 0, 0]]])
    fpr, pro = pro_curve(amap, mask, fpr_limit=1.0)
    assert list(fpr) == [0.0, 0.0, 0.5, 0.5, 1.0] and list(pro) == [0.0, 0.5, 0.5, 1.0, 1.0]
    assert aupro(amap, mask, 1.0) == pytest.approx(np.trapezoid(pro, fpr))


def test_labelled_strip_names_its_panels_and_keeps_the_pictures():
    image = np.random.default_rng(0).random((40, 40, 3)).astype(np.float32)
    amap, mask = np.zeros((40, 40), np.float32), np.zeros((40, 40), bool)
    plain = comparison_strip(image, image, amap, mask, mask)
    labelled = comparison_strip(image, image, amap, mask, mask, caption="score 0.700 -> anomalous")
    k = 4  # 42 px panel pitch (40 + gap 2), enlarged to at least 128 px
    big = np.asarray(plain.resize((plain.width * k, plain.height * k), Image.Resampling.NEAREST))
    band = (labelled.height - big.shape[0]) // 2
    assert band > 0 and labelled.width >= big.shape[1]
    assert np.array_equal(np.asarray(labelled)[band : band + big.shape[0], : big.shape[1]], big)
    assert (np.asarray(labelled)[:band] < 128).any() and (np.asarray(labelled)[-band:] < 128).any()  # text


def test_a_weakly_supervised_run_stores_its_calibration_and_draws_it(tmp_path_factory, tmp_path):
    import shutil

    run = tmp_path / "Dw"
    shutil.copytree(shared_run(tmp_path_factory, "Dw"), run)
    # the verdict by C's calibrated probability (training's "auto" may have chosen the map's peak)
    assert main(["evaluate", str(run), "--device", "cpu", "--no-progress", "--set", "infer.image_score=paper"]) == 0
    n_val = sum(r.label == 0 for r in RunData.load(run).val)
    stored = torch.load(run / "checkpoint.pt", weights_only=True)["normalizer"]["classifier_scores"]
    assert len(stored) == n_val > 0 and all(0 <= v <= 1 for v in stored)
    scores = json.loads((run / "scores.json").read_text())
    cal = json.loads((run / "metrics.json").read_text())["classifier_calibration"]
    assert scores["calibrated"] and scores["held_out_raw_scores"] == pytest.approx(stored)
    assert cal["hi"] == pytest.approx(conformal_by_hand(stored, 0.95))
    # the raw-probability threshold drawn is where the calibrated score reaches 0.5
    assert scores["thresholds"]["raw_score"] == pytest.approx(cal["lo"] + (cal["hi"] - cal["lo"]), abs=1e-9)
    for im in scores["images"]:
        assert im["verdict"] == int(im["raw_score"] >= scores["thresholds"]["raw_score"] - 1e-9)


@pytest.mark.parametrize(
    "score, kind, label",
    [("map", "map_peak", "peak of the anomaly map"), ("bce", "reconstruction_bce", "mean reconstruction BCE")],
)
def test_a_run_scored_by_the_maps_peak_or_the_bce_says_so_and_stores_that_normaliser(
    tmp_path_factory, tmp_path, score, kind, label
):
    import shutil

    run = tmp_path / "Du"
    shutil.copytree(shared_run(tmp_path_factory, "Du"), run)
    assert main(["evaluate", str(run), "--device", "cpu", "--no-progress", "--set", f"infer.image_score={score}"]) == 0
    scores = json.loads((run / "scores.json").read_text())
    metrics = json.loads((run / "metrics.json").read_text())
    assert scores["score_kind"] == kind and metrics["image_score"] == score
    peaks = Predictor.from_run(run, "cpu", [f"infer.image_score={score}"]).image_score_normalizer.scores
    assert scores["held_out_raw_scores"] == pytest.approx(peaks)
    assert metrics["score_normalizer"]["hi"] == pytest.approx(conformal_by_hand(peaks, 0.95))
    for im in scores["images"]:  # (the map saturates at 1 after one epoch: ties at the threshold are skipped)
        if abs(im["raw_score"] - scores["thresholds"]["raw_score"]) > 1e-6:
            assert im["verdict"] == int(im["raw_score"] > scores["thresholds"]["raw_score"])
    assert label in (run / "report" / "histogram.svg").read_text()


def test_evaluate_says_where_the_report_page_is(tmp_path_factory, tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(shared_run(tmp_path_factory), run)
    assert main(["evaluate", str(run), "--device", "cpu", "--no-progress"]) == 0
    assert f"and {run / 'report' / 'index.html'} (open it in a browser)" in capsys.readouterr().out


def test_the_benchmark_pages_wall_column_reads_the_grids_cells_too():
    from cavga.report.benchmark_report import wall_text

    assert wall_text({"wall_seconds": {"train_this_call": 3.0, "total": 3.5, "resumed": False}}) == "3.5"
    grid_cell = {"wall_seconds": {"train_this_call": 40.0, "total_this_call": 44.2}, "grid_cell": {"resumed": True}}
    assert wall_text(grid_cell) == "44.2 (resumed)"
    assert wall_text({}) == ""
