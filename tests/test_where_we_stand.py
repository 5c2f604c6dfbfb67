"""benchmarks/where_we_stand.py: the summary table of targets against stored runs."""

from __future__ import annotations

import json

from _scripts import benchmark_script

wws = benchmark_script("where_we_stand")


def _store(folder, iou, pixel, res_iou):
    folder.mkdir(parents=True)
    metrics = {"metrics": {"iou": iou, "pixel_auroc": pixel}, "image_auroc": 0.9, "baseline_residual": {"iou": res_iou}}
    (folder / "metrics.json").write_text(json.dumps(metrics))


def test_a_row_averages_its_seeds_and_judges_the_mean_against_the_target(tmp_path, monkeypatch):
    monkeypatch.setattr(wws, "RESULTS", tmp_path)
    _store(tmp_path / "a", 0.30, 0.9499, 0.10)
    _store(tmp_path / "b", 0.40, 0.9500, 0.20)
    row = wws.Row(8, "d", "m", ["a", "b"], {"iou": 0.34}, {"iou": (0.34, 1), "pixel_auroc": (0.95, 1)})
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
    assert wws.summarise(wws.Row(10, "d", "AE-SSIM", ["a"], target={"iou": (0.10, 0.20)}))["met"] == {"iou": False}


def test_every_row_reads_stored_results():
    for row in wws.ROWS:
        s = wws.summarise(row)  # raises if a folder is missing
        assert s["seeds"] >= 1 and set(s["target"]) <= set(s["ours"])
