"""Listing, splitting and loading data sets (cavga.data), on tiny trees made in tmp_path."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from cavga.config import DataConfig
from cavga.data import (
    IMAGE_EXTENSIONS,
    MVTEC_CATEGORIES,
    Batch,
    ImageDataset,
    Record,
    Sample,
    Split,
    collate,
    drop_weak_anomalies_from_test,
    folder_split,
    hold_out_normals,
    image_size_of,
    load_image,
    load_mask,
    load_split,
    move_anomalous_to_train,
    mtd_split,
    mvtec_split,
)
from cavga.errors import CavgaError


def _png(path: Path, size: tuple[int, int] = (16, 16), value: int = 128, mode: str = "RGB") -> Path:
    """A small image file of one value (size is width, height)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    colour = (value,) * len(mode) if mode in ("RGB", "RGBA") else value
    Image.new(mode, size, colour).save(path)
    return path


def _mask(path: Path, size: tuple[int, int] = (16, 16), box: tuple[int, int, int, int] = (4, 4, 8, 8)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    a = np.zeros((size[1], size[0]), dtype=np.uint8)
    x0, y0, x1, y1 = box
    a[y0:y1, x0:x1] = 255
    Image.fromarray(a).save(path)
    return path


def _mvtec(root: Path, category: str = "widget") -> Path:
    """root/<category>: 3 train goods, 2 test goods, 2 'crack' and 1 'hole' with masks."""
    base = root / category
    for i in range(3):
        _png(base / "train" / "good" / f"{i:03d}.png", value=100 + i)
    for i in range(2):
        _png(base / "test" / "good" / f"{i:03d}.png", value=90 + i)
    for defect, n in (("crack", 2), ("hole", 1)):
        for i in range(n):
            _png(base / "test" / defect / f"{i:03d}.png", value=200)
            _mask(base / "ground_truth" / defect / f"{i:03d}_mask.png")
    return base


def _mtd(root: Path, n_free: int = 10, defects: dict[str, int] | None = None) -> Path:
    """A fake Magnetic Tile Defect tree: grayscale jpgs of varying sizes with png masks."""
    defects = defects if defects is not None else {"Crack": 3, "Blowhole": 2}
    for i in range(n_free):
        size = (20 + i, 14 + 2 * i)
        _png(root / "MT_Free" / "Imgs" / f"exp{i}_num_{i}.jpg", size, 120, "L")
        _png(root / "MT_Free" / "Imgs" / f"exp{i}_num_{i}.png", size, 0, "L")
    for cls, n in defects.items():
        for i in range(n):
            size = (24, 18 + i)
            _png(root / f"MT_{cls}" / "Imgs" / f"{cls}_{i}.jpg", size, 60, "L")
            _mask(root / f"MT_{cls}" / "Imgs" / f"{cls}_{i}.png", size, (2, 2, 10, 10))
    return root


# ---------------------------------------------------------------------------------------------
# mvtec


def test_constants():
    assert len(MVTEC_CATEGORIES) == 15 and "metal_nut" in MVTEC_CATEGORIES
    assert ".png" in IMAGE_EXTENSIONS and ".jpg" in IMAGE_EXTENSIONS


def test_mvtec_tree_loads_with_counts_labels_and_masks(tmp_path):
    base = _mvtec(tmp_path)
    split = mvtec_split(tmp_path, "widget")
    assert [Path(r.image_path).name for r in split.train] == ["000.png", "001.png", "002.png"]
    assert all(r.label == 0 and r.mask_path is None and r.defect_type == "good" for r in split.train)
    assert [(r.defect_type, r.label) for r in split.test] == [
        ("crack", 1),
        ("crack", 1),
        ("good", 0),
        ("good", 0),
        ("hole", 1),
    ]
    crack0 = split.test[0]
    assert crack0.mask_path == str(base.resolve() / "ground_truth" / "crack" / "000_mask.png")
    assert split.info["layout"] == "mvtec" and split.info["category"] == "widget"
    assert split.info["counts"] == {"train_normal": 3, "train_anomalous": 0, "test_normal": 2, "test_anomalous": 3}
    assert split.info["defect_types"] == ["crack", "hole"]

    ds = ImageDataset(split.test, 8)
    s = ds[0]
    assert s.image.shape == (3, 8, 8) and s.image.dtype == torch.float32
    assert s.mask.shape == (1, 8, 8) and set(s.mask.unique().tolist()) == {0.0, 1.0}
    assert s.mask[0, 2:4, 2:4].eq(1).all() and s.mask[0, 5:, 5:].eq(0).all()  # box (4..8) of 16 -> (2..4) of 8
    assert torch.allclose(s.image, torch.full_like(s.image, 200 / 255))
    normal = ds[2]
    assert normal.label == 0 and normal.mask.shape == (1, 8, 8) and normal.mask.sum() == 0


def test_mvtec_root_may_be_the_category_folder(tmp_path):
    base = _mvtec(tmp_path)
    split = mvtec_split(base, None)
    assert split.info["category"] == "widget" and len(split.train) == 3 and len(split.test) == 5


def test_mvtec_missing_mask_names_the_image(tmp_path):
    base = _mvtec(tmp_path)
    (base / "ground_truth" / "crack" / "001_mask.png").unlink()
    with pytest.raises(CavgaError, match=r"crack/001\.png: anomalous test image has no mask"):
        mvtec_split(tmp_path, "widget")


def test_mvtec_orphan_mask_names_the_mask(tmp_path):
    base = _mvtec(tmp_path)
    _mask(base / "ground_truth" / "crack" / "007_mask.png")
    with pytest.raises(CavgaError, match=r"007_mask\.png: mask has no matching image"):
        mvtec_split(tmp_path, "widget")


def test_mvtec_missing_or_absent_category_lists_the_categories(tmp_path):
    _mvtec(tmp_path, "widget")
    _mvtec(tmp_path, "gadget")
    with pytest.raises(CavgaError, match="category 'bottle' not found.*gadget, widget"):
        mvtec_split(tmp_path, "bottle")
    with pytest.raises(CavgaError, match="category is required.*gadget, widget"):
        mvtec_split(tmp_path, None)


def test_missing_root_and_empty_training_folder(tmp_path):
    with pytest.raises(CavgaError, match=r"nowhere: data folder not found; the layout expects ROOT/<category>/train"):
        mvtec_split(tmp_path / "nowhere", "widget")
    base = _mvtec(tmp_path)
    for p in (base / "train" / "good").iterdir():
        p.unlink()
    with pytest.raises(CavgaError, match=r"train/good: no training images"):
        mvtec_split(tmp_path, "widget")


def test_non_image_files_are_skipped_with_a_warning(tmp_path):
    base = _mvtec(tmp_path)
    (base / "train" / "good" / "README.txt").write_text("notes")
    (base / "test" / "good" / ".DS_Store").write_bytes(b"\0\1")  # hidden files are no one's images: left out
    (base / "test" / "crack" / "._001.png").write_bytes(b"\0\5\26\7")  # macOS's attributes beside a copied file
    (base / "ground_truth" / "crack" / "._001_mask.png").write_bytes(b"\0\5\26\7")
    with pytest.warns(UserWarning) as record:
        split = mvtec_split(tmp_path, "widget")
    messages = " ".join(str(w.message) for w in record)
    assert "README.txt" in messages and "._001" not in messages and ".DS_Store" not in messages
    assert len(split.train) == 3 and len(split.test) == 5


def test_a_category_folder_given_as_the_root_refuses_another_category(tmp_path):
    base = _mvtec(tmp_path)
    assert mvtec_split(base, "widget").info["category"] == "widget"
    with pytest.raises(CavgaError, match="is the category folder 'widget', not 'cable'"):
        mvtec_split(base, "cable")


def test_corrupt_and_truncated_images_fail_with_one_line_naming_them(tmp_path):
    base = _mvtec(tmp_path)
    (base / "train" / "good" / "003.png").write_bytes(b"this is not a png at all")
    good = base / "train" / "good" / "004.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(good)
    data = good.read_bytes()
    good.write_bytes(data[: len(data) // 2])
    split = mvtec_split(tmp_path, "widget")  # listing does not open files
    ds = ImageDataset(split.train, 8)
    for i, name in ((3, "003.png"), (4, "004.png")):
        with pytest.raises(CavgaError) as e:
            ds[i]
        msg = str(e.value)
        assert name in msg and "cannot read image" in msg and "\n" not in msg
    with pytest.raises(CavgaError, match="003.png: cannot read image"):
        image_size_of(base / "train" / "good" / "003.png")


def test_image_mask_size_mismatch_names_both_files(tmp_path):
    base = _mvtec(tmp_path)
    _mask(base / "ground_truth" / "hole" / "000_mask.png", size=(12, 16))
    split = mvtec_split(tmp_path, "widget")
    i = next(i for i, r in enumerate(split.test) if r.defect_type == "hole")
    with pytest.raises(CavgaError, match=r"000_mask\.png: mask is 12x16 but image .*hole/000\.png is 16x16"):
        ImageDataset(split.test, 8)[i]


def test_load_split_dispatches_and_rejects_unknown_layouts(tmp_path):
    _mvtec(tmp_path)
    split = load_split(DataConfig(root=str(tmp_path), layout="mvtec", category="widget", seed=3))
    assert split.info["layout"] == "mvtec" and split.info["seed"] == 3
    with pytest.raises(CavgaError, match="unknown layout 'kitti'"):
        load_split(DataConfig(root=str(tmp_path), layout="kitti"))
    with pytest.raises(CavgaError, match="data.root is not set"):
        load_split(DataConfig(root=None))


# ---------------------------------------------------------------------------------------------
# loading images and masks


def test_grayscale_rgba_palette_and_16bit_images_become_rgb(tmp_path):
    gray = _png(tmp_path / "g.png", (20, 10), 51, "L")
    rgba = tmp_path / "a.png"
    Image.new("RGBA", (10, 10), (255, 0, 0, 0)).save(rgba)
    pal = tmp_path / "p.png"
    Image.new("RGB", (10, 10), (0, 0, 255)).convert("P").save(pal)
    deep = tmp_path / "d.png"
    a16 = np.full((10, 10), 65535, dtype=np.uint16)
    a16[:, :5] = 0
    Image.fromarray(a16).save(deep)

    g = load_image(gray, 8)
    assert g.shape == (3, 8, 8) and g.dtype == torch.float32
    assert torch.allclose(g, torch.full_like(g, 51 / 255), atol=1e-6)
    r = load_image(rgba, 8)
    assert r.shape == (3, 8, 8) and torch.allclose(r[0], torch.ones(8, 8)) and r[1:].abs().max() < 1e-6
    p = load_image(pal, 4)
    assert p.shape == (3, 4, 4) and p[2].min() > 0.99 and p[:2].max() < 0.01
    d = load_image(deep, None)
    assert d.shape == (3, 10, 10) and d.max() == 1.0 and d.min() == 0.0
    assert torch.equal(d[:, :, 5:], torch.ones(3, 10, 5))
    d8 = load_image(deep, 8)
    assert d8.shape == (3, 8, 8) and 0.0 <= d8.min() and d8.max() <= 1.0
    assert image_size_of(gray) == (10, 20)


@pytest.mark.parametrize("fmt", ["png", "jpeg", "tiff", "webp"])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_images_are_read_upright_by_their_exif_orientation(tmp_path, fmt, orientation):
    """Each of the eight EXIF orientations, against Pillow's own ImageOps.exif_transpose; the size
    read from the header alone agrees with the decoded image."""
    from PIL import ImageOps

    stored = Image.fromarray(np.arange(5 * 7 * 3, dtype=np.uint8).reshape(5, 7, 3) * 2)  # 7 wide, 5 high
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / f"o.{fmt}"
    stored.save(path, exif=exif, **({"lossless": True} if fmt == "webp" else {}))
    with Image.open(path) as im:
        expected = np.asarray(ImageOps.exif_transpose(im), dtype=np.float32) / 255.0  # (H, W, 3)
    got = load_image(path, None)  # (3, H, W)
    assert np.array_equal(got.permute(1, 2, 0).numpy(), expected)
    assert image_size_of(path) == expected.shape[:2] == ((7, 5) if orientation >= 5 else (5, 7))


def test_a_mask_drawn_on_the_upright_view_of_a_turned_photo_fits_it(tmp_path):
    """A portrait shot stored as landscape pixels plus EXIF orientation 6: its mask, drawn on what a
    viewer shows (portrait, no EXIF), loads beside it and covers the defect the upright image shows."""
    upright = np.zeros((12, 8, 3), dtype=np.uint8)  # (H, W, 3): portrait
    upright[1:3, 5:7] = 255  # the defect, near the top right
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 clockwise to display"
    photo = tmp_path / "photo.png"
    Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90).save(photo, exif=exif)  # stored 12 x 8
    mask = _mask(tmp_path / "photo_mask.png", (8, 12), (5, 1, 7, 3))  # (x0, y0, x1, y1) on the upright view

    assert image_size_of(photo) == (12, 8)
    m = load_mask(mask, None, expected_size=image_size_of(photo), image_path=photo)  # (1, 12, 8)
    x = load_image(photo, None)  # (3, 12, 8)
    assert torch.equal(x[0] > 0.5, m[0] > 0.5)


def test_mask_nearest_resize_stays_binary(tmp_path):
    m = _mask(tmp_path / "m.png", (16, 16), (3, 5, 11, 9))
    for size in (5, 8, 32):
        t = load_mask(m, size, (16, 16))
        assert t.shape == (1, size, size) and t.dtype == torch.float32
        assert set(t.unique().tolist()) == {0.0, 1.0}
    t8 = load_mask(m, 8, None)
    expected = torch.zeros(8, 8)
    expected[2:4, 1:5] = 1  # rows 5..8, columns 3..10 of 16; output pixel j samples input 2j + 1
    assert torch.equal(t8[0], expected)


def test_soft_mask_is_thresholded_above_127(tmp_path):
    a = np.array([[100, 127, 128, 200]] * 4, dtype=np.uint8)
    path = tmp_path / "soft.png"
    Image.fromarray(a).save(path)
    t = load_mask(path, None)
    assert t.shape == (1, 4, 4)
    assert t[0, 0].tolist() == [0.0, 0.0, 1.0, 1.0]
    with pytest.raises(CavgaError, match="soft.png: mask is 4x4 but its image is 5x4"):
        load_mask(path, 4, (4, 5))


def test_missing_files_are_cavga_errors(tmp_path):
    with pytest.raises(CavgaError, match="gone.png: image file not found"):
        load_image(tmp_path / "gone.png", 8)
    with pytest.raises(CavgaError, match="gone.png: mask file not found"):
        load_mask(tmp_path / "gone.png", 8)


# ---------------------------------------------------------------------------------------------
# mtd


def test_mtd_split_counts_and_labels(tmp_path):
    root = _mtd(tmp_path)
    split = mtd_split(root, 0.8, seed=0)
    assert len(split.train) == 8 and all(r.label == 0 for r in split.train)
    assert split.info["counts"] == {"train_normal": 8, "train_anomalous": 0, "test_normal": 2, "test_anomalous": 5}
    assert split.info["layout"] == "mtd" and split.info["seed"] == 0 and split.info["train_fraction"] == 0.8
    assert {r.defect_type for r in split.test if r.label} == {"crack", "blowhole"}
    assert all(r.image_path.endswith(".jpg") for r in split.train + split.test)
    assert all(r.mask_path and r.mask_path.endswith(".png") for r in split.test if r.label)
    assert not {r.image_path for r in split.train} & {r.image_path for r in split.test}

    ds = ImageDataset(split.train + split.test, 16)
    for i in range(len(ds)):
        s = ds[i]
        assert s.image.shape == (3, 16, 16) and s.mask.shape == (1, 16, 16)
        assert (s.mask.sum() == 0) == (s.label == 0)


def test_mtd_split_is_seeded(tmp_path):
    root = _mtd(tmp_path, n_free=12)
    a = mtd_split(root, 0.75, seed=0)
    b = mtd_split(root, 0.75, seed=0)
    assert a.to_dict() == b.to_dict()
    others = [{r.image_path for r in mtd_split(root, 0.75, seed=s).train} for s in (1, 2, 3)]
    assert any(o != {r.image_path for r in a.train} for o in others)
    assert all(len(o) == 9 for o in others)


def test_mtd_missing_mask_and_missing_free(tmp_path):
    root = _mtd(tmp_path)
    (root / "MT_Crack" / "Imgs" / "Crack_1.png").unlink()
    with pytest.raises(CavgaError, match=r"Crack_1\.jpg: anomalous image has no mask"):
        mtd_split(root)
    with pytest.raises(CavgaError, match="no MT_<class> folders"):
        mtd_split(tmp_path / "MT_Crack")
    with pytest.raises(CavgaError, match=r"train_fraction: 1.5 is outside"):
        mtd_split(root, 1.5)


# ---------------------------------------------------------------------------------------------
# folder


def _folder(root: Path, masks: bool) -> Path:
    for i in range(5):
        _png(root / "good" / f"n{i}.png", value=100)
    for i in range(2):
        _png(root / "dent" / f"d{i}.jpg", value=30)
        if masks:
            _mask(root / "ground_truth" / "dent" / (f"d{i}_mask.png" if i == 0 else f"d{i}.png"))
    _png(root / "smear" / "s0.png", value=220)
    return root


def test_folder_layout_with_masks(tmp_path):
    split = folder_split(_folder(tmp_path, masks=True), 0.6, seed=1)
    assert split.info["counts"] == {"train_normal": 3, "train_anomalous": 0, "test_normal": 2, "test_anomalous": 3}
    dents = [r for r in split.test if r.defect_type == "dent"]
    assert [Path(r.mask_path).name for r in dents] == ["d0_mask.png", "d1.png"]
    smear = next(r for r in split.test if r.defect_type == "smear")
    assert smear.label == 1 and smear.mask_path is None


def test_folder_layout_without_masks_and_collate(tmp_path):
    split = folder_split(_folder(tmp_path, masks=False), 0.8, seed=0)
    assert len(split.train) == 4 and len(split.test) == 4
    anomalous = [r for r in split.test if r.label]
    assert len(anomalous) == 3 and all(r.mask_path is None for r in anomalous)
    ds = ImageDataset(split.test, 8)
    samples = [ds[i] for i in range(len(ds))]
    assert [s.mask is None for s in samples] == [r.label == 1 for r in split.test]
    batch = collate(samples)
    assert isinstance(batch, Batch) and len(batch) == 4
    assert batch.image.shape == (4, 3, 8, 8) and batch.mask.shape == (4, 1, 8, 8)
    assert batch.mask.sum() == 0
    assert batch.has_mask.tolist() == [r.label == 0 for r in split.test]
    assert batch.label.dtype == torch.long and batch.label.tolist() == [r.label for r in split.test]
    assert batch.path == [r.image_path for r in split.test]


def test_folder_layout_presplit_and_errors(tmp_path):
    for i in range(3):
        _png(tmp_path / "train" / "good" / f"{i}.png")
    _png(tmp_path / "test" / "good" / "0.png")
    _png(tmp_path / "test" / "bad" / "0.png")
    _png(tmp_path / "test" / "bad" / "1.png")
    _mask(tmp_path / "masks" / "bad" / "1_mask.png")
    split = folder_split(tmp_path)
    assert split.info["presplit"] is True and len(split.train) == 3
    assert [(r.label, r.mask_path is not None) for r in split.test] == [(1, False), (1, True), (0, False)]
    with pytest.raises(CavgaError, match=r"masks/good: folder of normal images not found \(sub-folders found: bad\); "
                       r"put the normal images in"):  # fmt: skip
        folder_split(tmp_path / "masks")


def test_a_plain_folder_of_images_is_all_normal(tmp_path):
    """What a user hands over first: a folder of good images, no sub-folders."""
    for i in range(5):
        _png(tmp_path / "mine" / f"{i}.png")
    (tmp_path / "mine" / "notes.txt").write_text("camera 2")  # skipped with a warning, as in good/
    with pytest.warns(UserWarning, match="notes.txt: not an image file"):
        split = folder_split(tmp_path / "mine", 0.8, seed=0)
    assert split.info["counts"] == {"train_normal": 4, "train_anomalous": 0, "test_normal": 1, "test_anomalous": 0}
    assert {Path(r.image_path).name for r in split.train + split.test} == {f"{i}.png" for i in range(5)}
    assert all(r.label == 0 and r.defect_type == "good" for r in split.train + split.test)
    with pytest.raises(CavgaError, match=r"categories found: none\); not an MVTec AD tree: .* use --layout folder"):
        mvtec_split(tmp_path / "mine", None)  # the default layout says which one to use


def _said(record) -> list[str]:
    return [str(w.message) for w in record]


def test_a_mask_folder_for_good_images_is_skipped_with_a_warning_not_refused(tmp_path):
    """A ``good`` folder among the masks (MVTec AD has none; some exports write one, all black) is not
    read: a normal image's ground truth is empty. Said once, naming the folder; a defect folder's
    mask without its image is still an error."""
    base = _mvtec(tmp_path)
    _png(base / "ground_truth" / "good" / "000_mask.png", mode="L", value=0)  # test/good/000.png exists
    _png(base / "ground_truth" / "good" / "007_mask.png", mode="L", value=0)  # and no image at all: not read
    with pytest.warns(UserWarning) as record:
        split = mvtec_split(tmp_path, "widget")
    good = base / "ground_truth" / "good"
    assert _said(record) == [f"{good}: masks of normal images are not used (a normal image's ground truth is empty); "
                             "folder skipped"]  # fmt: skip
    assert len(split.train) == 3 and len(split.test) == 5
    assert all(r.mask_path is None for r in split.test if r.label == 0)
    _mask(base / "ground_truth" / "crack" / "007_mask.png")
    with pytest.warns(UserWarning), pytest.raises(CavgaError, match=r"crack/007_mask\.png: mask has no matching image"):
        mvtec_split(tmp_path, "widget")

    root = _folder(tmp_path / "mine", masks=True)  # the folder layout: ROOT/ground_truth/good beside ROOT/good
    _png(root / "ground_truth" / "good" / "n0_mask.png", mode="L", value=0)
    with pytest.warns(UserWarning, match=r"mine/ground_truth/good: masks of normal images are not used"):
        split = folder_split(root, 0.6, seed=1)
    assert split.info["counts"] == {"train_normal": 3, "train_anomalous": 0, "test_normal": 2, "test_anomalous": 3}
    presplit = tmp_path / "presplit"  # and its train/ + test/ form
    _png(presplit / "train" / "good" / "0.png")
    _png(presplit / "test" / "good" / "0.png")
    _png(presplit / "test" / "bad" / "0.png")
    _png(presplit / "masks" / "good" / "0.png", mode="L", value=0)
    with pytest.warns(UserWarning, match=r"presplit/masks/good: masks of normal images are not used"):
        assert len(folder_split(presplit).test) == 2


def test_masks_lying_directly_in_the_mask_folder_are_said_not_dropped_silently(tmp_path):
    """A mask directly in ground_truth/ (not in its defect type's folder) matches no image: one warning
    naming it and where masks go, in the mvtec and the folder layout alike."""
    base = _mvtec(tmp_path)
    _mask(base / "ground_truth" / "000_mask.png")
    with pytest.warns(UserWarning) as record:
        split = mvtec_split(tmp_path, "widget")
    gt = base / "ground_truth"
    assert _said(record) == [f"{gt}: left out 1 image file lying directly in this folder (000_mask.png); "
                             f"masks go in {gt}/<defect type>/"]  # fmt: skip
    assert len(split.test) == 5
    root = _folder(tmp_path / "mine", masks=True)
    _mask(root / "ground_truth" / "loose_mask.png")
    with pytest.warns(UserWarning, match=r"mine/ground_truth: left out 1 image file .*\(loose_mask\.png\)"):
        folder_split(root, 0.6, seed=1)


def test_images_lying_beside_the_image_folders_are_said_not_dropped_silently(tmp_path):
    """Image files directly in a folder whose sub-folders hold the images (MVTec AD's train/ and test/,
    beside the folder layout's good/, MTD's root and MT_<class>/) are left out with one warning per
    folder: how many, one or two names, and where images go. Other files there pass unsaid."""
    base = _mvtec(tmp_path)
    _png(base / "train" / "stray.png")
    for name in ("a.png", "b.jpg", "c.PNG"):
        _png(base / "test" / name)
    (base / "test" / "readme.txt").write_text("a note, no image")
    with pytest.warns(UserWarning) as record:
        split = mvtec_split(tmp_path, "widget")
    assert len(split.train) == 3 and len(split.test) == 5
    assert _said(record) == [
        f"{base / 'train'}: left out 1 image file lying directly in this folder (stray.png); "
        f"training images go in {base / 'train' / 'good'}/",
        f"{base / 'test'}: left out 3 image files lying directly in this folder (a.png, b.jpg, ...); "
        f"test images go in {base / 'test' / 'good'}/ or {base / 'test'}/<defect type>/",
    ]

    root = _folder(tmp_path / "mine", masks=False)
    _png(root / "stray.png")
    with pytest.warns(UserWarning) as record:
        split = folder_split(root, 0.8, seed=0)
    assert _said(record) == [f"{root}: left out 1 image file lying directly in this folder (stray.png); normal images "
                             f"go in {root / 'good'}/, anomalous ones in {root}/<defect type>/"]  # fmt: skip
    assert "stray.png" not in " ".join(r.image_path for r in split.train + split.test)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a plain folder of images is all normal: nothing left out, nothing said
        assert len(folder_split(root / "good", 0.8, seed=0).train) == 4

    mtd = _mtd(tmp_path / "mtd")
    _png(mtd / "loose.jpg")
    _png(mtd / "MT_Crack" / "Crack_9.jpg")
    (mtd / "README.md").write_text("the data set's notes")
    with pytest.warns(UserWarning) as record:
        mtd_split(mtd)
    said = _said(record)
    assert len(said) == 2
    assert said[0].startswith(f"{mtd}: left out 1 image file lying directly in this folder (loose.jpg); images go in")
    assert said[1] == (f"{mtd / 'MT_Crack'}: left out 1 image file lying directly in this folder (Crack_9.jpg); "
                       f"images and their masks go in {mtd / 'MT_Crack' / 'Imgs'}/")  # fmt: skip


def test_collate_mixes_real_masks_and_missing_ones():
    img = torch.rand(3, 4, 4)
    m = torch.ones(1, 4, 4)
    batch = collate([Sample(img, m, 1, "cut", "a"), Sample(img, None, 1, "cut", "b")])
    assert batch.has_mask.tolist() == [True, False]
    assert batch.mask[0].sum() == 16 and batch.mask[1].sum() == 0


def test_dataloader_with_collate(tmp_path):
    _mvtec(tmp_path)
    split = mvtec_split(tmp_path, "widget")
    loader = DataLoader(ImageDataset(split.test, 8), batch_size=2, collate_fn=collate)
    batches = list(loader)
    assert [len(b) for b in batches] == [2, 2, 1]
    assert batches[0].to("cpu").image.shape == (2, 3, 8, 8)


# ---------------------------------------------------------------------------------------------
# protocol helpers and serialisation


def _records(n_normal: int, n_anom: int) -> Split:
    train = [Record(f"tr{i}.png", None, 0, "good") for i in range(n_normal)]
    test = [Record(f"te{i}.png", None, 0, "good") for i in range(3)]
    test += [Record(f"an{i}.png", f"an{i}_mask.png", 1, "cut") for i in range(n_anom)]
    return Split(train, test, {"layout": "folder", "root": "/data"})


def test_move_anomalous_to_train():
    split = _records(10, 50)
    a = move_anomalous_to_train(split, 0.1, seed=0)
    b = move_anomalous_to_train(split, 0.1, seed=0)
    c = move_anomalous_to_train(split, 0.1, seed=1)
    assert a.to_dict() == b.to_dict() and a.to_dict() != c.to_dict()
    moved = [r for r in a.train if r.label == 1]
    assert len(moved) == 5 and all(r.mask_path is None for r in moved)
    assert not {r.image_path for r in moved} & {r.image_path for r in a.test}
    assert len(a.test) == len(split.test) - 5 and len(a.train) == 15
    assert a.info["weak_supervision"]["moved"] == [r.image_path for r in moved]
    assert a.info["weak_supervision"]["anomalous_fraction"] == 0.1 and a.info["weak_supervision"]["seed"] == 0
    assert a.info["counts"]["train_anomalous"] == 5 and a.info["counts"]["test_anomalous"] == 45
    assert len(split.test) == 53  # the input is not changed

    # the count is the ceiling of fraction * n (Table 2's MVTec AD share is 2.8%, not rounded down):
    # bottle's 63 anomalous images give 2 at 2% (round: 1); exact products are not pushed up by float error
    for n_anom, fraction, k in ((63, 0.02, 2), (50, 0.02, 1), (100, 0.07, 7), (151, 0.02, 4)):
        w = move_anomalous_to_train(_records(5, n_anom), fraction, seed=0)
        assert w.info["weak_supervision"]["n_moved"] == k, (n_anom, fraction)
    tiny = move_anomalous_to_train(split, 0.001, seed=0)
    assert sum(r.label for r in tiny.train) == 1
    two = move_anomalous_to_train(_records(2, 2), 0.99, seed=0)
    assert sum(r.label for r in two.train) == 1 and sum(r.label for r in two.test) == 1
    with pytest.raises(CavgaError, match="no anomalous images"):
        move_anomalous_to_train(_records(3, 0), 0.1, seed=0)


def test_drop_weak_anomalies_from_test_removes_what_w_trains_on():
    split = _records(10, 50)
    for fraction, seed in ((0.02, 0), (0.1, 3)):
        u = drop_weak_anomalies_from_test(split, fraction, seed)
        w = move_anomalous_to_train(split, fraction, seed)
        assert u.test == w.test and u.train == split.train
        assert u.info["shared_test_set"]["removed"] == w.info["weak_supervision"]["moved"]
        assert u.info["counts"]["test_anomalous"] == 50 - w.info["weak_supervision"]["n_moved"]
    normal_only = _records(10, 0)
    assert drop_weak_anomalies_from_test(normal_only, 0.02, 0) is normal_only


def test_hold_out_normals():
    records = [Record(f"n{i}.png", None, 0, "good") for i in range(20)] + [Record("a.png", None, 1, "cut")]
    kept, held = hold_out_normals(records, 0.1, seed=0)
    assert len(held) == 2 and all(r.label == 0 for r in held)
    assert records[-1] in kept and len(kept) == 19
    assert set(kept) | set(held) == set(records) and not set(kept) & set(held)
    assert hold_out_normals(records, 0.1, seed=0) == (kept, held)
    assert hold_out_normals(records, 0.1, seed=5)[1] != held
    assert len(hold_out_normals(records[:3], 0.01, seed=0)[1]) == 1  # at least one
    assert hold_out_normals(records, 0.0, seed=0) == (records, [])
    assert hold_out_normals(records[:1], 0.5, seed=0) == (records[:1], [])


def test_split_round_trips_through_json(tmp_path):
    _mvtec(tmp_path)
    split = move_anomalous_to_train(mvtec_split(tmp_path, "widget"), 0.5, seed=2)
    text = json.dumps(split.to_dict())
    back = Split.from_dict(json.loads(text))
    assert back == split
    assert Record.from_dict(split.test[0].to_dict()) == split.test[0]


# ---------------------------------------------------------------------------------------------
# the real data set (opt in with -m slow)


def _real_mtd() -> Path:
    env = os.environ.get("CAVGA_DATA")
    base = Path(env) if env else Path(__file__).resolve().parents[1].parent / "shared" / "data"
    return base / "mtd"


@pytest.mark.slow
def test_real_mtd_split_counts():
    root = _real_mtd()
    if not root.is_dir():
        pytest.skip(f"{root} not found")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the real data has no stray files
        split = mtd_split(root, 0.8, seed=0)
    c = split.info["counts"]
    assert (len(split.train), len(split.test)) == (596, 466)
    assert (c["test_normal"], c["test_anomalous"]) == (149, 317)
    assert split.info["defect_types"] == ["blowhole", "break", "crack", "fray", "uneven"]
    ds = ImageDataset(split.test, 64)
    idx = [0, 148, 149, 200, 465]
    for i in idx:
        s = ds[i]
        assert s.image.shape == (3, 64, 64) and s.mask.shape == (1, 64, 64)
        assert (s.mask.sum() > 0) == (s.label == 1)


def test_a_test_mask_of_the_wrong_size_stops_train_before_it_trains(tmp_path, capsys):
    from cavga.cli import main
    from cavga.data import verify_masks

    root = _mvtec(tmp_path / "d")
    bad = root / "ground_truth" / "hole" / "000_mask.png"
    _mask(bad, (12, 16))
    with pytest.raises(CavgaError, match=r"000_mask.png: mask is 12x16 but image .*hole/000.png is 16x16"):
        verify_masks(mvtec_split(tmp_path / "d", "widget").test)
    out = tmp_path / "run"
    argv = ["train", "--data", str(tmp_path / "d"), "--layout", "mvtec", "--category", "widget", "--out", str(out)]
    assert main([*argv, "--image-size", "32", "--epochs", "1", "--device", "cpu", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "000_mask.png: mask is 12x16" in err and "Traceback" not in err
    assert not (out / "checkpoint.pt").exists() and not (out / "config.yaml").exists()


def test_pillows_size_warning_names_the_image(tmp_path, monkeypatch):
    """A decompression-bomb warning (an image over Pillow's pixel limit) says which file it is about."""
    big = _png(tmp_path / "big.png", (40, 30))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 1200 pixels: over the limit, under twice it
    with pytest.warns(Image.DecompressionBombWarning) as caught:
        load_image(big, None)
    assert any(str(w.message).startswith(f"{big}: Image size (1200 pixels) exceeds limit") for w in caught)


def test_a_category_for_a_layout_without_categories_is_said_and_a_relative_root_shown_absolute(tmp_path, monkeypatch):
    from cavga.data.layouts import load_split

    root = tmp_path / "plain"
    for i in range(3):
        _png(root / "good" / f"{i}.png")
    with pytest.warns(UserWarning, match="data.category 'bottle': the folder layout has no categories; ignored"):
        load_split(DataConfig(root=str(root), layout="folder", category="bottle"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CavgaError, match=rf"^nowhere: data folder not found \(looked for {tmp_path}/nowhere\)"):
        load_split(DataConfig(root="nowhere", layout="folder"))
