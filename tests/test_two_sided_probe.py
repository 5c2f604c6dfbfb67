"""benchmarks/two_sided_probe.py: CAVGA-u's attention read as its departure from the normal level."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from _painted_runs import small_data, tiny_config
from _scripts import benchmark_script
from cavga.config import RunConfig
from cavga.metrics import pixel_auroc
from cavga.train import train


def _predictor(size: int) -> SimpleNamespace:
    cfg = RunConfig()
    cfg.data.image_size, cfg.infer.map_blur = size, 0.0
    return SimpleNamespace(cfg=cfg)


def test_two_sided_ways_find_a_rise_and_a_dip_that_each_single_direction_half_misses():
    probe = benchmark_script("two_sided_probe")
    s = torch.full((2, 8, 8), 0.5)  # the normal level everywhere
    s[0, 1:3, 1:3] = 1.4  # a defect that raises A (a scratch on MTD)
    s[1, 5:7, 5:7] = 0.0  # one that lowers it (a stain)
    masks = np.zeros((2, 8, 8), dtype=bool)
    masks[0, 1:3, 1:3] = masks[1, 5:7, 5:7] = True
    maps = probe.ways(_predictor(8), s, 0.5, torch.full((8, 8), 0.5))
    auroc = {k: pixel_auroc(m.numpy(), masks) for k, m in maps.items()}
    assert auroc["two_sided"] == auroc["two_sided_position"] == 1.0
    assert auroc["direct"] < 0.9 and auroc["inverse"] < 0.9  # each ranks one defect below the normal pixels
    assert maps["inverse"][0, 1, 1] == 0.0 and maps["inverse"][1, 5, 5] == 1.0  # 1 - min(s, 1)
    assert maps["direct"][0, 1, 1] == pytest.approx(1.4 / 2.4)  # s / (1 + s)
    assert maps["two_sided"][0, 1, 1] == pytest.approx(0.9 / 1.9)  # |s - m| / (1 + |s - m|)
    assert maps["two_sided"][1, 5, 5] == pytest.approx(0.5 / 1.5)


def test_the_per_position_level_is_each_pixels_own():
    probe = benchmark_script("two_sided_probe")
    level_map = torch.zeros(4, 4)
    level_map[:, 2:] = 1.0  # a bright half whose normal attention is higher (an aligned object's rim)
    s = level_map[None].clone()  # a normal image: every pixel at its own level
    maps = probe.ways(_predictor(4), s, 0.5, level_map)
    assert torch.all(maps["two_sided_position"] == 0)  # no departure anywhere
    assert torch.allclose(maps["two_sided"], torch.full_like(s, 0.5 / 1.5))  # the global level sees both halves depart


def test_the_levels_are_the_median_over_content_and_the_median_at_each_pixel():
    probe = benchmark_script("two_sided_probe")
    s_fit = torch.stack([torch.full((2, 2), v) for v in (1.0, 2.0, 9.0)])  # (3, 2, 2)
    s_fit[:, 0, 0] = torch.tensor([0.0, 0.1, 0.2])  # one pixel whose normal level is lower
    level, level_map = probe.levels(s_fit, None)
    assert level_map[0, 0] == pytest.approx(0.1) and level_map[1, 1] == 2.0  # per pixel, over the images
    assert level == 1.0  # over all 12 values: 0, 0.1, 0.2, 1, 1, 1, 2, 2, 2, 9, 9, 9 (torch: the lower middle)
    inside = torch.zeros(3, 2, 2, dtype=torch.bool)
    inside[:, 1, :] = True  # only the bottom row is content (padding above)
    assert probe.levels(s_fit, inside)[0] == 2.0  # 1, 1, 2, 2, 9, 9


def test_the_probe_scores_a_trained_run_on_paint_and_test(tmp_path_factory):
    root = small_data(tmp_path_factory.mktemp("data"))
    run = train(tiny_config(root, 1), tmp_path_factory.mktemp("runs") / "run", progress=False).parent
    out = benchmark_script("two_sided_probe").probe(run, test=True, fade=0.5)
    ways = {"inverse", "direct", "two_sided", "two_sided_position"}
    assert set(out["painted_pixel_auroc"]) == set(out["test_pixel_auroc"]) == ways
    assert all(0.0 <= v <= 1.0 for v in out["painted_pixel_auroc"].values())
    assert "faded to U(0.5, 1)" in out["painted"]
    painted = out["painted_pixel_auroc"]
    assert painted["inverse"] == pytest.approx(1 - painted["direct"], abs=0.05)  # opposite readings of one s


def test_the_direction_choice_probe_compares_todays_choice_and_the_proposed_on_unseen_paint(tmp_path_factory):
    root = small_data(tmp_path_factory.mktemp("data"))
    run = train(tiny_config(root, 1), tmp_path_factory.mktemp("runs") / "run", progress=False).parent
    out = benchmark_script("direction_choice_probe").probe(run, fade=0.5, check_seed=1)
    deciding = out["deciding_paint"]["pixel_auroc_by_way"]
    assert set(deciding) == {"inverse", "direct", "two_sided"} and out["today"] in ("inverse", "direct")
    assert out["proposed"] == max(deciding, key=deciding.get)
    assert (out["deciding_paint"]["seed"], out["check_paint"]["seed"]) == (0, 1)  # defects no decision saw
    for paint in ("faded", "full_strength"):
        check = out["check_paint"][paint]
        assert out["proposed_minus_today"][paint] == pytest.approx(
            check[out["proposed"]] - check[out["today"]], abs=1e-4
        )
