"""Report images: sizes, modes, exact contour and blend colours, atomic saving, torch input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib import colormaps
from PIL import Image
from scipy import ndimage

from cavga.errors import CavgaError
from cavga.visualize import comparison_strip, contour, heatmap_overlay, mask_image, save_png

H, W = 24, 32


def _inputs(seed: int = 0):
    rng = np.random.default_rng(seed)
    image = rng.random((H, W, 3)).astype(np.float32)  # (H, W, 3)
    amap = rng.random((H, W)).astype(np.float32)  # (H, W)
    mask = np.zeros((H, W), dtype=bool)
    mask[6:14, 8:20] = True
    return image, amap, mask


def test_overlay_size_mode_and_blend():
    image, amap, _ = _inputs()
    img = heatmap_overlay(image, amap, alpha=0.4)
    assert img.size == (W, H) and img.mode == "RGB"
    expected = 0.6 * image + 0.4 * colormaps["jet"](amap)[..., :3]  # (H, W, 3)
    assert np.abs(np.asarray(img, dtype=np.float64) - expected * 255).max() <= 0.51
    assert np.array_equal(np.asarray(heatmap_overlay(image, amap, alpha=0.0)), np.round(image * 255))


def test_contour_is_exactly_the_mask_boundary():
    image, amap, mask = _inputs()
    color = (0, 255, 0)
    plain = np.asarray(heatmap_overlay(image, amap))
    drawn = np.asarray(heatmap_overlay(image, amap, mask, contour_color=color))
    boundary = mask & ~ndimage.binary_erosion(mask)  # (H, W)
    assert boundary.sum() == 2 * (8 + 12) - 4
    assert np.array_equal(contour(mask), boundary)
    assert (drawn[boundary] == color).all()
    assert np.array_equal(drawn[~boundary], plain[~boundary])  # nothing else changes
    thick = np.asarray(heatmap_overlay(image, amap, mask, contour_color=color, contour_width=2))
    assert (thick[mask & ~ndimage.binary_erosion(mask, iterations=2)] == color).all()


def test_jet_colours_follow_the_map():
    black = np.zeros((1, 101, 3), np.float32)
    ramp = np.linspace(0, 1, 101, dtype=np.float32)[None]  # (1, 101)
    rgb = np.asarray(heatmap_overlay(black, ramp, alpha=1.0)).astype(int)[0]  # (101, 3)
    assert rgb[0, 2] > rgb[0, 0] and rgb[-1, 0] > rgb[-1, 2]  # low = blue, high = red
    assert (np.diff(rgb[:86, 0]) >= 0).all()  # red rises with the score up to jet's dark-red tail
    assert rgb[80, 0] > rgb[40, 0]


def test_torch_inputs_match_numpy():
    image, amap, mask = _inputs()
    a = heatmap_overlay(image, amap, mask)
    b = heatmap_overlay(torch.from_numpy(image).permute(2, 0, 1), torch.from_numpy(amap), torch.from_numpy(mask))
    assert np.array_equal(np.asarray(a), np.asarray(b))
    m = mask_image(torch.from_numpy(mask))
    assert np.array_equal(np.asarray(m), np.asarray(mask_image(mask)))


def test_map_of_other_size_is_resized():
    image, _, mask = _inputs()
    img = heatmap_overlay(image, np.zeros((H // 2, W // 2), np.float32), mask)
    assert img.size == (W, H)


def test_mask_image_values():
    _, _, mask = _inputs()
    img = mask_image(mask)
    assert img.mode == "L" and img.size == (W, H)
    arr = np.asarray(img)
    assert set(np.unique(arr)) == {0, 255}
    assert np.array_equal(arr == 255, mask)
    assert np.array_equal(np.asarray(mask_image(mask.astype(np.float32))), arr)


def test_save_png_atomic(tmp_path):
    image, amap, mask = _inputs()
    img = heatmap_overlay(image, amap, mask)
    path = save_png(img, tmp_path / "a" / "b" / "overlay.png")
    assert path.exists()
    assert np.array_equal(np.asarray(Image.open(path)), np.asarray(img))
    assert sorted(p.name for p in path.parent.iterdir()) == ["overlay.png"]  # no temp file left
    save_png(mask_image(mask), path)  # overwrite
    assert Image.open(path).mode == "L"
    assert sorted(p.name for p in path.parent.iterdir()) == ["overlay.png"]


def test_save_png_failure_leaves_nothing(tmp_path):
    class Broken:
        def save(self, *args, **kwargs):
            raise OSError("disk full")

    with pytest.raises(CavgaError, match=r"x.png: cannot write this file \(disk full\)"):  # one line naming it
        save_png(Broken(), tmp_path / "x.png")
    assert list(tmp_path.iterdir()) == []


def test_comparison_strip_layout():
    image, amap, mask = _inputs()
    recon = torch.from_numpy(image).permute(2, 0, 1)  # (3, H, W)
    strip = comparison_strip(torch.from_numpy(image).permute(2, 0, 1), recon, amap, mask, mask)
    assert strip.mode == "RGB" and strip.size == (5 * W + 4 * 2, H)
    arr = np.asarray(strip)
    assert np.array_equal(arr[:, :W], np.round(image * 255))  # input first
    assert np.array_equal(arr[:, 2 * (W + 2) : 3 * W + 4], np.asarray(heatmap_overlay(image, amap, mask)))
    assert np.array_equal(arr[:, 3 * (W + 2) : 4 * W + 6, 0] == 255, mask)  # predicted mask
    no_gt = comparison_strip(image, image[: H // 2, : W // 2], amap, mask, None, gap=0)
    assert no_gt.size == (4 * W, H)


def test_the_mask_outline_widens_on_large_images():
    big = np.zeros((2000, 3000, 3), dtype=np.float32)
    mask = np.zeros((2000, 3000), dtype=bool)
    mask[500:1500, 1000:2000] = True
    out = np.asarray(heatmap_overlay(big, np.zeros((20, 30), dtype=np.float32), mask))  # (2000, 3000, 3)
    assert (out[1000, 1000:1010] == 255).all(axis=1).sum() == 6  # 6 px across on a 3000 px image
    small = np.asarray(heatmap_overlay(*_inputs()))
    assert (small[10, 8:12] == 255).all(axis=1).sum() == 1  # thumbnails keep 1 px


def test_the_overlay_blends_in_float32():
    import tracemalloc

    image = np.random.default_rng(0).random((1000, 1000, 3)).astype(np.float32)
    amap = np.random.default_rng(1).random((1000, 1000)).astype(np.float32)
    tracemalloc.start()
    heatmap_overlay(image, amap)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 60e6  # float64 colours alone, (H, W, 4), would take 32 MB, their blend 24 MB more
