"""benchmarks/where_we_stand.py: the summary table of targets against stored runs."""

from __future__ import annotations

import json

import pytest

from _scripts import benchmark_script

benchmark_script("where_we_stand_rows")  # where_we_stand imports it, as it does when run from benchmarks/
wws = benchmark_script("where_we_stand")


def _store(folder, iou, pixel, res_iou, split=None):
    folder.mkdir(parents=True)
    metrics = {"metrics": {"iou": iou, "pixel_auroc": pixel}, "image_auroc": 0.9, "baseline_residual": {"iou": res_iou}}
    if split is not None:
        metrics["split"] = {"seed": split}
    (folder / "metrics.json").write_text(json.dumps(metrics))


def test_a_row_averages_its_seeds_and_judges_the_mean_against_the_target(tmp_path, monkeypatch):
    monkeypatch.setattr(wws, "RESULTS", tmp_path)
    _store(tmp_path / "a", 0.30, 0.9499, 0.10)
    _store(tmp_path / "b", 0.40, 0.9500, 0.20)
    row = wws.Row("k", 8, "d", "m", ["a", "b"], {"iou": 0.34}, {"iou": (0.34, 1), "pixel_auroc": (0.95, 1)})
    s = wws.summarise(row)
    assert abs(s["ours"]["iou"]["mean"] - 0.35) < 1e-12 and abs(s["ours"]["iou"]["std"] - 0.0707107) < 1e-6
    assert abs(s["residual"]["iou"] - 0.15) < 1e-12 and s["ours"]["image_auroc"]["mean"] == 0.9  # top-level key
    assert s["met"] == {"iou": True, "pixel_auroc": False}  # 0.94995 < 0.95
    line = wws.table([s]).splitlines()[-1]
    assert "0.350 ± 0.071 (0.34)" in line and "| 0.9499 ± " in line  # 0.950 would hide the miss
    assert "IoU >= 0.34: met; pixel >= 0.95: **unmet**" in line


def test_a_band_target_is_missed_above_it_too(tmp_path, monkeypatch):
    monkeypatch.setattr(wws, "RESULTS", tmp_path)
    _store(tmp_path / "a", 0.369, 0.9, 0.08)
    assert wws.summarise(wws.Row("k", 10, "d", "AE-SSIM", ["a"], target={"iou": (0.10, 0.20)}))["met"] == {"iou": False}


def test_a_reference_names_the_rows_place_so_a_row_added_above_renumbers_it(tmp_path, monkeypatch):
    monkeypatch.setattr(wws, "RESULTS", tmp_path)
    _store(tmp_path / "a", 0.3, 0.9, 0.1)
    rows = [wws.Row("old", 8, "d", "m", ["a"]), wws.Row("new", 8, "d", "as [[old]]", ["a"], note="([[old]])")]
    s = wws.summarise(rows[1], wws.places(rows))
    assert s["what"] == "as row 1" and s["note"] == "(row 1)" and s["row"] == 2
    rows.insert(0, wws.Row("top", 8, "d", "m", ["a"]))
    assert wws.summarise(rows[2], wws.places(rows))["what"] == "as row 2"
    assert wws.table([s]).splitlines()[-1].startswith("| 2 | 8 | d | as row 1 |")
    with pytest.raises(SystemExit, match="share a key"):
        wws.places([*rows, wws.Row("old", 8, "d", "m", ["a"])])


def test_the_runs_cell_names_each_runs_split_and_says_when_runs_share_one(tmp_path, monkeypatch):
    monkeypatch.setattr(wws, "RESULTS", tmp_path)
    _store(tmp_path / "a", 0.2, 0.9, 0.1, split=1)
    _store(tmp_path / "b", 0.3, 0.9, 0.1, split=1)  # a restart candidate's plain run on another seed's split
    _store(tmp_path / "c", 0.3, 0.9, 0.1, split=0)
    _store(tmp_path / "old", 0.3, 0.9, 0.1)  # stored before metrics.json said its split
    cell = lambda runs: wws.table([wws.summarise(wws.Row("k", 8, "d", "m", runs))]).splitlines()[-1].split(" | ")[4]  # noqa: E731
    assert cell(["a", "b"]) == "2 (splits 1, 1: 1 split)"
    assert cell(["c", "a"]) == "2 (splits 0, 1)" and cell(["c"]) == "1 (split 0)"
    assert cell(["a", "old"]) == "2"  # an unknown split claims nothing


def test_a_by_split_row_averages_each_splits_runs_first(tmp_path, monkeypatch):
    monkeypatch.setattr(wws, "RESULTS", tmp_path)
    _store(tmp_path / "a", 0.2, 0.9, 0.1, split=0)
    _store(tmp_path / "b", 0.4, 0.9, 0.1, split=0)  # a second run on split 0: the same test set
    _store(tmp_path / "c", 0.5, 0.9, 0.3, split=1)
    s = wws.summarise(wws.Row("k", 8, "d", "m", ["a", "b", "c"], by_split=True))
    assert s["ours"]["iou"]["values"] == pytest.approx([0.3, 0.5]) and s["ours"]["iou"]["mean"] == pytest.approx(0.4)
    assert s["residual"]["iou"] == pytest.approx(0.2) and s["seeds"] == 3  # (0.1 + 0.3) / 2; three runs
    assert wws.table([s]).splitlines()[-1].split(" | ")[4] == "3 (splits 0, 0, 1: 2 splits)"
    _store(tmp_path / "old", 0.3, 0.9, 0.1)  # no split stored: cannot be placed
    with pytest.raises(SystemExit, match="split"):
        wws.summarise(wws.Row("k", 8, "d", "m", ["a", "old"], by_split=True))


def test_every_row_reads_stored_results():
    place = wws.places(wws.ROWS)
    for row in wws.ROWS:
        s = wws.summarise(row, place)  # raises if a folder is missing, or a text names a key no row has
        assert "[[" not in s["what"] + s["note"]
        assert s["seeds"] >= 1 and set(s["target"]) <= set(s["ours"])


def _grid(folder, cells):
    folder.mkdir(parents=True)
    rows = [{"category": c, "seed": s, "metrics": {"image_auroc": v}, "baseline_residual": {"image_auroc": v - 0.1}}
            for c, s, v in cells]  # fmt: skip
    (folder / "results.json").write_text(json.dumps({"cells": rows}))


def test_a_grid_row_reads_seeds_run_as_separate_grids_and_rejects_a_cell_twice(tmp_path, monkeypatch):
    monkeypatch.setattr(wws, "RESULTS", tmp_path)
    _grid(tmp_path / "s0", [("0", 0, 0.90), ("1", 0, 1.00)])
    _grid(tmp_path / "s12", [("0", 1, 0.80), ("1", 1, 0.90), ("0", 2, 0.96), ("1", 2, 0.98)])
    s = wws.summarise(wws.Row("k", 10, "d", "m", [], target={"image_auroc": (0.95, 1)}, grids=["s0", "s12"]))
    assert s["seeds"] == 3 and s["ours"]["image_auroc"]["values"] == pytest.approx([0.95, 0.85, 0.97])  # per seed
    assert abs(s["ours"]["image_auroc"]["mean"] - 0.9233333) < 1e-6 and s["met"] == {"image_auroc": False}
    assert abs(s["residual"]["image_auroc"] - 0.8233333) < 1e-6
    _grid(tmp_path / "again", [("0", 0, 0.5)])
    with pytest.raises(SystemExit, match="twice"):
        wws.summarise(wws.Row("k", 10, "d", "m", [], grids=["s0", "again"]))


def _weak_run(folder, split, moved, iou, by_defect, model="CAVGA-Dw (distilled)", painted=None):
    folder.mkdir(parents=True)
    weak = {"moved": [f"/data/bottle/test/{m}" for m in moved]}
    metrics = {"model": model, "metrics": {"iou": iou, "pixel_auroc": 0.8}, "per_defect_iou": by_defect,
               "split": {"category": "bottle", "seed": split, "weak_supervision": weak}}  # fmt: skip
    (folder / "metrics.json").write_text(json.dumps(metrics))
    if painted is not None:
        (folder / "validation.json").write_text(json.dumps({"metrics": {"pixel_auroc": painted}}))


def test_weak_split_groups_cavga_w_runs_by_the_anomalies_they_trained_on(tmp_path):
    ws = benchmark_script("weak_split")
    _weak_run(tmp_path / "a", 0, ["contamination/012.png"], 0.10, {"broken": 0.05, "contamination": 0.20}, painted=0.9)
    _weak_run(tmp_path / "s/b", 0, ["contamination/012.png"], 0.20, {"broken": 0.15, "contamination": 0.30})
    _weak_run(tmp_path / "c", 1, ["broken/008.png"], 0.30, {"broken": 0.40, "contamination": 0.10})
    _weak_run(tmp_path / "k2", 0, ["broken/004.png", "contamination/012.png"], 0.40, {"broken": 0.4})  # 2 drawn
    _weak_run(tmp_path / "u", 0, [], 0.50, {"broken": 0.5}, model="CAVGA-Du")  # not CAVGA-w: left out
    _weak_run(tmp_path / "r", 2, ["broken/001.png"], 0.50, {"broken": 0.5}, model="CAVGA-Rw")  # another model
    runs = ws.weak_runs(tmp_path, "Dw", "bottle")
    assert [(r["run"], r["split"]) for r in runs] == [("a", 0), ("s/b", 0), ("k2", 0), ("c", 1)]
    assert runs[0]["trained_on"] == ["contamination/012.png"] and runs[0]["painted_pixel_auroc"] == 0.9
    summary = list(ws.by_split(runs).values())
    assert [(s["split"], s["runs"]) for s in summary] == [(0, 2), (0, 1), (1, 1)]  # split 0's two draws apart
    assert summary[0]["iou"] == pytest.approx(0.15)
    assert summary[0]["iou_by_defect"] == pytest.approx({"broken": 0.10, "contamination": 0.25})
    assert summary[1]["trained_on"] == ["broken/004.png", "contamination/012.png"] and summary[1]["iou"] == 0.40
    assert summary[2]["trained_on"] == ["broken/008.png"] and summary[2]["iou"] == pytest.approx(0.30)


def test_a_run_without_a_residual_baseline_reads_as_none(tmp_path, monkeypatch):
    """A baseline's metrics.json (PatchCore) stores ``baseline_residual: null``: its residual cell stays empty."""
    monkeypatch.setattr(wws, "RESULTS", tmp_path)
    (tmp_path / "pc").mkdir()
    metrics = {"metrics": {"pixel_auroc": 0.85}, "baseline_residual": None}
    (tmp_path / "pc" / "metrics.json").write_text(json.dumps(metrics))
    s = wws.summarise(wws.Row("pc", 10, "d", "PatchCore", ["pc"]))
    assert s["ours"]["pixel_auroc"]["mean"] == 0.85 and set(s["residual"].values()) == {None}
    assert wws.table([s]).splitlines()[-1].endswith("| 1 |  | 0.850 |  |  |  |  | (none) |")
