"""The minimum defect area (infer.mask_min_area): MVTec AD's threshold rule and the region filter."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from _tiny_run import shared_run
from cavga.cli import main
from cavga.config import RunConfig
from cavga.data import load_image
from cavga.errors import CavgaError
from cavga.image_scores import answer_mask, peak_mask
from cavga.inference import Predictor
from cavga.min_area import area_rule_threshold, drop_small_regions, largest_region_share, region_areas
from cavga.painting import held_out_images
from cavga.redecide import redecide_run
from cavga.runfolder import RunData
from cavga.runtime import CHECKPOINT, load_checkpoint


def test_small_regions_are_dropped_and_diagonal_neighbours_are_one_region():
    mask = np.zeros((10, 10), dtype=bool)
    mask[1:4, 1:4] = True  # 9 px
    mask[8, 8] = True  # 1 px alone
    mask[6, 1] = mask[7, 2] = mask[8, 3] = True  # 3 px touching at corners: one 8-connected region
    kept = drop_small_regions(mask, 0.03)  # regions of 3 px (3% of 100) or more stay
    assert kept[1:4, 1:4].all() and kept[6, 1] and kept[7, 2] and kept[8, 3]
    assert not kept[8, 8] and kept.sum() == 12
    assert drop_small_regions(mask, 0.0) is mask  # off: the mask as it was
    assert largest_region_share(mask) == pytest.approx(0.09)


def test_the_area_is_a_share_of_each_images_content():
    masks = torch.zeros(2, 8, 8, dtype=torch.bool)
    masks[:, 0:2, 0:2] = True  # 4 px in each
    valid = torch.zeros(2, 1, 8, 8)
    valid[0] = 1.0  # 64 content pixels: 4 px is 6.25%
    valid[1, :, :4] = 1.0  # 32 content pixels: 4 px is 12.5%
    kept = drop_small_regions(masks, 0.1, valid)
    assert not kept[0].any() and kept[1].sum() == 4
    assert torch.equal(peak_mask(masks.float(), 0.5, 0.0, valid, 0.1), kept)  # the mask rule passes it on


def test_a_region_of_exactly_the_minimum_area_is_kept_as_the_area_rule_counts_it():
    mask = np.zeros((10, 10), dtype=bool)
    mask[0, :7] = True  # 7 px of 100: exactly 0.07, where 0.07 * 100 is 7.000000000000001 in floats
    assert not largest_region_share(mask) < 0.07  # a defect to the area rule ...
    assert drop_small_regions(mask, 0.07).sum() == 7  # ... and kept by the filter
    assert drop_small_regions(torch.from_numpy(mask)[None], 0.07).sum() == 7


def _brute_force(maps, min_area):
    """The lowest pixel value whose masks hold no region of min_area in any map, by trying every one."""
    for t in np.unique(np.concatenate([m.ravel() for m in maps])):
        if all(largest_region_share(m >= t) < min_area for m in maps):
            return float(t)
    raise AssertionError("some value passes: the highest leaves regions of one pixel")


@pytest.mark.parametrize("min_area", [0.002, 0.01, 0.05])
def test_the_area_rule_threshold_is_the_lowest_that_leaves_no_normal_region_that_large(min_area):
    rng = np.random.default_rng(0)
    maps = [rng.random((24, 24)).astype(np.float32) for _ in range(3)]
    t = area_rule_threshold(maps, min_area)
    assert t == _brute_force(maps, min_area)
    assert max(largest_region_share(m >= t) for m in maps) < min_area
    below = np.unique(np.concatenate([m.ravel() for m in maps]))
    below = below[below < t].max()  # the next lower value fails the rule
    assert max(largest_region_share(m >= below) for m in maps) >= min_area


def test_a_larger_minimum_area_never_raises_the_threshold():
    rng = np.random.default_rng(1)
    maps = [rng.random((16, 16)).astype(np.float32) for _ in range(2)]
    ts = [area_rule_threshold(maps, a) for a in (0.005, 0.02, 0.1, 0.5)]
    assert ts == sorted(ts, reverse=True)


def test_the_area_rule_needs_a_share_and_maps():
    with pytest.raises(ValueError, match="minimum area"):
        area_rule_threshold([np.zeros((4, 4))], 0.0)
    with pytest.raises(ValueError, match="minimum area"):
        area_rule_threshold([], 0.1)


@pytest.mark.parametrize("area", [-0.1, 1.0])
def test_the_config_rejects_an_area_outside_zero_one(area):
    cfg = RunConfig()
    cfg.infer.mask_min_area = area
    with pytest.raises(CavgaError, match="infer.mask_min_area"):
        cfg.validate()


def test_redecide_with_a_minimum_area_sets_mvtecs_threshold_and_masks_keep_no_smaller_region(
    tmp_path_factory, tmp_path, capsys
):
    """On a trained run: the decided threshold leaves no held-out normal map a region of the area, the
    stored quantile gives that threshold back, and every test mask's regions are at least that large."""
    run = shared_run(tmp_path_factory)
    area = 0.05
    out = tmp_path / "area"
    redecide_run(run, out, [f"infer.mask_min_area={area}"], "cpu")
    decision = load_checkpoint(out / CHECKPOINT)["mask_quantile"]
    assert decision["min_area_rule"]["min_area"] == area
    predictor = Predictor.from_run(out, "cpu")
    assert predictor.mask_min_area == area and predictor.mask_peak_fraction == 0.0
    t = decision["min_area_rule"]["threshold"]
    assert predictor.mask_threshold == pytest.approx(t, abs=1e-6)
    held_out = [r for r in RunData.load(out).val if r.label == 0]
    x, _ = held_out_images(held_out, predictor.cfg.data.image_size, predictor.cfg.data.resize)
    normal = predictor.predict_batch(x)
    assert all(largest_region_share(m >= t) < area for m in normal.anomaly_map.numpy())
    test = torch.stack([load_image(r.image_path, predictor.cfg.data.image_size) for r in RunData.load(out).test])
    maps = predictor.predict_batch(test).anomaly_map  # (B, S, S)
    masks = peak_mask(maps, predictor.mask_threshold, 0.0, None, area).numpy()
    smallest = [region_areas(m)[1].min() / m.size for m in masks if m.any()]
    assert all(s >= area for s in smallest)
    assert not np.array_equal(masks, peak_mask(maps, predictor.mask_threshold).numpy()) or not smallest
    capsys.readouterr()
    assert main(["validate", str(out), "--device", "cpu"]) == 0  # names the area beside the quantile in use
    assert f"regions under {area:g} of the image dropped" in capsys.readouterr().out


def test_an_answers_mask_keeps_no_region_under_the_minimum_area():
    """answer_mask (cavga predict's masks, eager or exported): a one-pixel peak is no defect region."""
    amap = np.zeros((20, 20), dtype=np.float32)
    amap[2:8, 2:8] = 1.0  # 36 px: 9% of the image
    amap[15, 15] = 1.0  # 1 px
    predictor = SimpleNamespace(mask_threshold=0.5, mask_peak_fraction=0.0, mask_gate=False, mask_min_area=0.01)
    mask = answer_mask(predictor, amap, 1)
    assert mask[2:8, 2:8].all() and not mask[15, 15] and mask.sum() == 36


def test_an_exported_model_carries_the_minimum_area_to_cavga_predict(tmp_path_factory, tmp_path):
    from cavga.export import ExportedPredictor, export_run

    run = shared_run(tmp_path_factory)
    exported = ExportedPredictor(export_run(run, tmp_path / "m.pt", "torchscript", ["infer.mask_min_area=0.05"]))
    assert exported.mask_min_area == 0.05
