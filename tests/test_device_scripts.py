"""The scripts that prepare and run a lent GPU call (benchmarks/shrink_for_device.py, gpu_session.py)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from _scripts import benchmark_script


def _tree(root):
    rng = np.random.default_rng(0)
    big = (
        root / "mvtec/bottle/test/broken_large/000.png",
        root / "mvtec/bottle/ground_truth/broken_large/000_mask.png",
    )
    for p in big:
        p.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (600, 600, 3), dtype=np.uint8)).save(big[0])
    mask = np.zeros((600, 600), np.uint8)
    mask[300:, :300] = 255
    Image.fromarray(mask).save(big[1])
    tiles = root / "mtd/MT_Crack/Imgs"
    tiles.mkdir(parents=True)
    Image.fromarray(rng.integers(0, 256, (400, 200), dtype=np.uint8)).save(tiles / "wide.jpg")
    Image.fromarray(np.zeros((400, 200), np.uint8)).save(tiles / "wide.png")
    Image.fromarray(rng.integers(0, 256, (90, 120), dtype=np.uint8)).save(tiles / "small.jpg")
    Image.fromarray(np.zeros((90, 120), np.uint8)).save(tiles / "small.png")


def test_shrink_keeps_masks_with_their_images_and_copies_small_tiles_unchanged(tmp_path):
    _tree(tmp_path / "src")
    script = benchmark_script("shrink_for_device")
    assert script.main([str(tmp_path / "src"), str(tmp_path / "dst"), "--side", "128"]) == 0
    dst = tmp_path / "dst"
    image = Image.open(dst / "mvtec/bottle/test/broken_large/000.png")
    mask = np.asarray(Image.open(dst / "mvtec/bottle/ground_truth/broken_large/000_mask.png"))
    assert image.size == (128, 128) and mask.shape == (128, 128)
    assert set(np.unique(mask)) == {0, 255} and mask[64:, :64].all() and not mask[:64, 64:].any()  # nearest, in place
    wide = dst / "mtd/MT_Crack/Imgs/wide"
    assert Image.open(wide.with_suffix(".jpg")).size == (64, 128) == Image.open(wide.with_suffix(".png")).size
    small = "mtd/MT_Crack/Imgs/small.jpg"
    assert (dst / small).read_bytes() == (tmp_path / "src" / small).read_bytes()


def test_gpu_session_refuses_an_unknown_run_name(tmp_path):
    script = benchmark_script("gpu_session")
    with pytest.raises(SystemExit, match="unknown"):
        script.main(
            [
                "--data",
                str(tmp_path),
                "--weights",
                "w.pth",
                "--out",
                str(tmp_path / "o"),
                "--work",
                str(tmp_path / "w"),
                "--smoke",
                "--speed",
                "",
                "--runs",
                "bottle-Xu",
                "--device",
                "cpu",
            ]
        )
