"""The validation protocol: painted defects on held-out normal images, never test images."""

import json

import numpy as np
import pytest
import torch

from cavga.config import RunConfig
from cavga.demo_data import DEFECT_TYPES, generate_demo_dataset
from cavga.errors import CavgaError
from cavga.runfolder import RunData
from cavga.train import train
from cavga.validation import VALIDATION_FILE, paint_validation_set, validate_run


def test_painting_changes_only_the_masked_pixels_and_keeps_clean_copies():
    torch.manual_seed(0)
    clean = torch.rand(3, 3, 64, 64) * 0.5 + 0.25
    x, masks, labels, kinds = paint_validation_set(clean, seed=0, copies=2)
    assert x.shape == (9, 3, 64, 64) and masks.shape == (9, 64, 64)
    assert labels.tolist() == [0] * 3 + [1] * 6 and kinds[:3] == ["good"] * 3
    assert set(kinds[3:]) <= set(DEFECT_TYPES) and len(set(kinds[3:])) == 4  # every painter is used
    assert torch.equal(x[:3], clean) and not masks[:3].any()
    for j in range(3, 9):
        assert masks[j].any() and masks[j].mean() < 0.25
        changed = (x[j] - clean[(j - 3) % 3]).abs().amax(dim=0).numpy() > 1e-6  # (S, S)
        assert not (changed & ~masks[j]).any()  # nothing outside the mask is touched
        assert changed[masks[j]].mean() > 0.5  # and most of the mask is


def test_painting_is_seeded():
    clean = torch.full((2, 3, 32, 32), 0.5)
    a, ma, _, _ = paint_validation_set(clean, seed=3)
    b, mb, _, _ = paint_validation_set(clean, seed=3)
    c, mc, _, _ = paint_validation_set(clean, seed=4)
    assert torch.equal(a, b) and np.array_equal(ma, mb) and not np.array_equal(ma, mc)


def _tiny_run(root, run, val_fraction):
    cfg = RunConfig()
    cfg.data.root, cfg.data.category, cfg.data.image_size = str(root), "brick", 32
    cfg.data.val_fraction = val_fraction
    cfg.model.base_channels = cfg.model.latent_channels = 8
    cfg.train.epochs, cfg.train.batch_size, cfg.train.device = 1, 4, "cpu"
    train(cfg, run, progress=False)
    return run


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    generate_demo_dataset(root, seed=0, n_train=20, n_test_good=2, n_test_defect=4, crop=48)
    return root


def test_validate_run_scores_held_out_images_only(tiny_data, tmp_path):
    run = _tiny_run(tiny_data, tmp_path / "run", 0.2)
    result = validate_run(run, device="cpu", copies=1)
    n_val = len(RunData.load(run).val)
    assert n_val == 4 and result["protocol"].startswith(f"held-out normals ({n_val})")
    stored = json.loads((run / VALIDATION_FILE).read_text())
    assert stored["metrics"] == pytest.approx(result["metrics"])
    for m in (result["metrics"], result["baseline_residual"]):
        assert set(m) >= {"pixel_auroc", "aupro", "image_auroc", "iou"}
    assert set(result["per_defect"]) <= set(DEFECT_TYPES)


def test_validate_run_without_held_out_images_is_an_error(tiny_data, tmp_path):
    run = _tiny_run(tiny_data, tmp_path / "run", 0.0)
    with pytest.raises(CavgaError, match="held out no normal images"):
        validate_run(run, device="cpu")
