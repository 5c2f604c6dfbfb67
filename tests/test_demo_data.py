"""The embedded demo data set (cavga.demo_data)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cavga.data import ImageDataset, mvtec_split
from cavga.demo_data import DEFECT_TYPES, DEMO_TEXTURES, MARKER, generate_demo_dataset
from cavga.errors import CavgaError

SMALL = {"n_train": 6, "n_test_good": 3, "n_test_defect": 8, "crop": 64}


def _hashes(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_textures_ship_offline():
    import skimage.data

    for name in DEMO_TEXTURES:
        a = getattr(skimage.data, name)()
        assert a.shape == (512, 512) and a.dtype == np.uint8


def test_demo_loads_through_mvtec_split_with_exact_masks(tmp_path):
    folder = generate_demo_dataset(tmp_path, seed=0, **SMALL)
    assert folder == tmp_path / "brick" and (folder / MARKER).is_file()
    split = mvtec_split(tmp_path, "brick")
    c = split.info["counts"]
    assert (c["train_normal"], c["test_normal"], c["test_anomalous"]) == (6, 3, 8)
    assert split.info["defect_types"] == sorted(DEFECT_TYPES)
    assert all(sum(r.defect_type == d for r in split.test) == 2 for d in DEFECT_TYPES)

    im = Image.open(split.train[0].image_path)
    assert im.mode == "RGB" and im.size == (64, 64)
    good = np.stack([np.asarray(Image.open(r.image_path), dtype=np.float32) for r in split.train])  # (N, C, C, 3)
    gray_spread = np.abs(good - good.mean(axis=3, keepdims=True)).max()
    assert gray_spread < 1e-6  # normal images are gray
    assert len({hashlib.sha256(good[i].tobytes()).hexdigest() for i in range(len(good))}) == len(good)

    for r in split.test:
        if r.label == 0:
            continue
        mask = np.asarray(Image.open(r.mask_path))
        assert set(np.unique(mask).tolist()) == {0, 255}
        area = (mask > 0).mean()
        assert 0.005 <= area <= 0.2, (r.defect_type, area)
        img = np.asarray(Image.open(r.image_path), dtype=np.float32)  # (C, C, 3)
        inside, outside = img[mask > 0], img[mask == 0]
        if r.defect_type == "stain":  # coloured on a gray texture
            assert np.abs(inside[:, 0] - inside[:, 2]).mean() > 30
            assert np.abs(outside[:, 0] - outside[:, 2]).max() == 0
        elif r.defect_type in ("scratch", "hole"):  # far from the texture's typical values
            med = np.median(outside)
            assert np.abs(inside.mean() - med) > 40
        else:  # patch: pasted texture differs from what surrounds it
            assert inside.std() > 5

    batch = [ImageDataset(split.test, 32)[i] for i in range(len(split.test))]
    assert all((s.mask.sum() > 0) == (s.label == 1) for s in batch)


def test_same_seed_gives_identical_files_and_other_seed_differs(tmp_path):
    a = generate_demo_dataset(tmp_path / "a", seed=3, **SMALL)
    b = generate_demo_dataset(tmp_path / "b", seed=3, **SMALL)
    c = generate_demo_dataset(tmp_path / "c", seed=4, **SMALL)
    ha, hb, hc = _hashes(a), _hashes(b), _hashes(c)
    assert ha == hb and len(ha) == 6 + 3 + 8 + 8 + 1
    assert ha != hc


def test_complete_set_is_reused_and_changed_parameters_regenerate(tmp_path):
    folder = generate_demo_dataset(tmp_path, seed=0, **SMALL)
    first = folder / "train" / "good" / "000.png"
    stamp = first.stat().st_mtime_ns
    extra = folder / "train" / "good" / "zzz.png"
    extra.write_bytes(first.read_bytes())  # survives a reuse, not a regeneration
    generate_demo_dataset(tmp_path, seed=0, **SMALL)
    assert extra.exists() and first.stat().st_mtime_ns == stamp

    generate_demo_dataset(tmp_path, seed=1, **SMALL)
    assert not extra.exists()
    assert json.loads((folder / MARKER).read_text())["seed"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["brick"]  # no temporary folders left


def test_a_folder_without_the_marker_is_refused_even_in_the_demos_layout(tmp_path):
    """Sets are renamed into place whole, so a folder without .complete is someone's data, perhaps
    laid out as MVTec AD (train/good/000.png) as the demo's own: it is refused and left as it was."""
    folder = tmp_path / "brick"
    (folder / "train" / "good").mkdir(parents=True)
    (folder / "train" / "good" / "000.png").write_bytes(b"mine")
    with pytest.raises(CavgaError, match=r"not a cavga demo data set \(no \.complete file\)"):
        generate_demo_dataset(tmp_path, seed=0, **SMALL)
    assert (folder / "train" / "good" / "000.png").read_bytes() == b"mine"
    assert [p.name for p in tmp_path.iterdir()] == ["brick"]  # no temporary folders left

    generated = generate_demo_dataset(tmp_path / "other", seed=0, **SMALL)
    (generated / MARKER).unlink()  # a completed set whose marker was removed: no longer known as ours
    with pytest.raises(CavgaError, match="not a cavga demo data set"):
        generate_demo_dataset(tmp_path / "other", seed=1, **SMALL)
    (tmp_path / "empty" / "brick").mkdir(parents=True)  # an empty folder holds nothing to lose
    assert (generate_demo_dataset(tmp_path / "empty", seed=0, **SMALL) / MARKER).is_file()


def test_refuses_to_overwrite_a_foreign_folder_and_bad_arguments(tmp_path):
    (tmp_path / "brick").mkdir()
    (tmp_path / "brick" / "my_photos").mkdir()
    with pytest.raises(CavgaError, match="not a cavga demo data set"):
        generate_demo_dataset(tmp_path, **SMALL)
    with pytest.raises(CavgaError, match="choose from brick, grass, gravel"):
        generate_demo_dataset(tmp_path, category="marble")
    with pytest.raises(CavgaError, match="crop"):
        generate_demo_dataset(tmp_path, crop=8)


@pytest.mark.parametrize("category", ["grass", "gravel"])
def test_other_textures(tmp_path, category):
    generate_demo_dataset(tmp_path, category=category, n_train=2, n_test_good=1, n_test_defect=4, crop=32)
    split = mvtec_split(tmp_path, category)
    assert len(split.train) == 2 and len(split.test) == 5


def test_default_set_counts(tmp_path):
    generate_demo_dataset(tmp_path)
    split = mvtec_split(tmp_path, "brick")
    assert split.info["counts"] == {"train_normal": 200, "train_anomalous": 0, "test_normal": 30, "test_anomalous": 60}
    assert Image.open(split.test[0].image_path).size == (128, 128)
