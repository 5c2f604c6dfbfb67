"""benchmarks/same_test_set.py: a stored run's image-level figures on another run's test images."""

from __future__ import annotations

import json

import pytest

from _scripts import benchmark_script

sts = benchmark_script("same_test_set")


def _im(path, label, raw, verdict, iou=0.0, defect="good"):
    return {"path": path, "label": label, "raw_score": raw, "verdict": verdict, "iou": iou, "defect": defect}


IMAGES = [
    _im("g0", 0, 0.1, 0), _im("g1", 0, 0.6, 1), _im("g2", 0, 0.2, 0),
    _im("a0", 1, 0.9, 1, 0.5, "cut"), _im("a1", 1, 0.3, 0, 0.1, "cut"), _im("a2", 1, 0.8, 1, 0.3, "hole"),
]  # fmt: skip


def test_figures_on_the_reference_images_only_against_hand_values():
    full = sts.on_test_set(IMAGES, [im["path"] for im in IMAGES])
    assert full["iou"] == pytest.approx(0.3) and full["detection_accuracy"] == pytest.approx((2 / 3 + 2 / 3) / 2)
    assert full["image_auroc"] == pytest.approx(8 / 9)  # pairs (anomalous above normal): 3 + 2 + 3 of 9
    part = sts.on_test_set(IMAGES, ["g0", "g1", "a0", "a2"])  # a1 and g2 left out
    assert (part["n_test"], part["n_test_anomalous"]) == (4, 2)
    assert part["iou"] == pytest.approx(0.4) and part["iou_by_defect"] == pytest.approx({"cut": 0.5, "hole": 0.3})
    assert part["detection_accuracy"] == pytest.approx((1 / 2 + 1) / 2) and part["image_auroc"] == 1.0


def test_a_reference_image_missing_from_the_run_is_an_error():
    with pytest.raises(SystemExit, match="1 of the reference test images"):
        sts.on_test_set(IMAGES, ["g0", "a0", "x9"], "runA")


def test_today_s_test_set_is_the_split_without_the_rounded_up_share_cavga_w_trains_on(tmp_path):
    from PIL import Image

    base = tmp_path / "widget"
    for folder, n in (("train/good", 4), ("test/good", 3), ("test/crack", 20)):
        (base / folder).mkdir(parents=True)
        for i in range(n):
            Image.new("L", (8, 8), 100 + i).save(base / folder / f"{i:03d}.png")
    (base / "ground_truth/crack").mkdir(parents=True)
    for i in range(20):
        Image.new("L", (8, 8), 255).save(base / "ground_truth/crack" / f"{i:03d}_mask.png")
    run = tmp_path / "run"
    run.mkdir()
    split = {"layout": "mvtec", "root": str(base), "category": "widget", "seed": 3,
             "shared_test_set": {"anomalous_fraction": 0.12, "seed": 3}}  # fmt: skip
    (run / "metrics.json").write_text(json.dumps({"split": split}))
    paths, left_out = sts.today_test_set(run)
    assert len(paths) == 3 + 20 - 3 and left_out["n_removed"] == 3  # ceil(0.12 * 20) = 3 moved (round: 2)
    assert not set(paths) & set(left_out["removed"])
    assert sum("/test/good/" in p for p in paths) == 3 and len(set(paths)) == len(paths)
