"""data.resize: pad keeps the aspect ratio, and the padding never reaches a loss, a score or a metric."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from cavga import data as D
from cavga.cli import main
from cavga.config import ModelConfig, RunConfig
from cavga.errors import CavgaError
from cavga.inference import Predictor
from cavga.losses import attention_expansion_loss, complementary_guided_attention_loss, reconstruction_loss
from cavga.networks import build_networks
from cavga.painting import paint_validation_set
from cavga.runfolder import RunData
from cavga.step import train_step


def test_content_box_keeps_the_aspect_ratio_and_centres_it():
    assert D.content_box((20, 40), 32, "pad") == (8, 0, 16, 32)
    assert D.content_box((60, 15), 32, "pad") == (0, 12, 32, 8)
    assert D.content_box((20, 40), 32, "stretch") == (0, 0, 32, 32)
    assert D.content_box((50, 50), 32, "pad") == (0, 0, 32, 32)


def test_to_canvas_pads_with_black_around_the_resized_image():
    x = torch.rand(3, 20, 40)
    c = D.to_canvas(x, 32, "pad")  # (3, 32, 32), content rows 8..23
    assert c.shape == (3, 32, 32)
    assert torch.all(c[:, :8] == D.geometry.PAD_VALUE) and torch.all(c[:, 24:] == D.geometry.PAD_VALUE)
    ref = F.interpolate(x[None], size=(16, 32), mode="bilinear", align_corners=False, antialias=True)[0]
    assert torch.allclose(c[:, 8:24], ref.clamp(0, 1))
    stretched = D.to_canvas(x, 32, "stretch")
    assert torch.allclose(stretched, F.interpolate(x[None], (32, 32), mode="bilinear", antialias=True)[0].clamp(0, 1))


def test_center_places_a_small_image_unresampled_and_shrinks_a_large_one_as_pad():
    x = torch.rand(3, 28, 28)  # an MNIST digit into a 32 px input
    assert D.content_box((28, 28), 32, "center") == (2, 2, 28, 28)
    c = D.to_canvas(x, 32, "center")  # (3, 32, 32)
    assert torch.equal(c[:, 2:30, 2:30], x)  # its own pixels, not interpolated
    border = torch.ones(32, 32, dtype=torch.bool)
    border[2:30, 2:30] = False
    assert torch.all(c[:, border] == D.geometry.PAD_VALUE)
    assert torch.equal(D.from_canvas(c[0], (28, 28), "center"), x[0])  # and a map goes back pixel for pixel
    assert D.content_box((17, 9), 32, "center") == (7, 11, 17, 9)
    for size in ((20, 40), (60, 15), (50, 50)):  # larger than the square on some side: as pad
        assert D.content_box(size, 32, "center") == D.content_box(size, 32, "pad")
    assert D.content_box((50, 50), 32, "center") == (0, 0, 32, 32)


def test_from_canvas_returns_a_map_to_the_image_where_it_came_from():
    m = torch.zeros(32, 32)
    m[8:24, 24:32] = 1.0  # the right quarter of a 20 x 40 image's content (rows 8..23)
    native = D.from_canvas(m, (20, 40), "pad")  # (20, 40)
    assert native.shape == (20, 40)
    assert native[:, 32:].min() > 0.9 and native[:, :28].max() < 0.1
    # with stretch the padding rows would be read as image: the same map lands elsewhere
    assert D.from_canvas(m, (20, 40), "stretch")[:3].max() < 0.1


def test_a_mask_lands_where_its_image_content_does(tmp_path):
    img = np.full((20, 40), 200, np.uint8)
    img[2:6, 30:36] = 0  # a dark defect near the top right
    Image.fromarray(img).save(tmp_path / "a.png")
    Image.fromarray(np.where(img == 0, 255, 0).astype(np.uint8)).save(tmp_path / "a_mask.png")
    x = D.load_image(tmp_path / "a.png", 32, "pad")  # (3, 32, 32)
    mask = D.load_mask(tmp_path / "a_mask.png", 32, (20, 40), resize="pad")[0]  # (32, 32)
    assert mask.sum() > 0
    assert x[0][mask > 0].mean() < 0.15 < 0.7 < x[0][8:24][mask[8:24] == 0].mean()  # on the dark pixels
    assert torch.all(mask[:8] == 0) and torch.all(mask[24:] == 0)  # never in the padding


def test_padding_is_pasted_from_the_input():
    x, x_hat = torch.zeros(1, 3, 4, 4), torch.ones(1, 3, 4, 4)
    valid = D.geometry.box_mask((1, 0, 2, 4), 4)[None]  # (1, 1, 4, 4)
    out = D.paste_padding(x_hat, x, valid)
    assert torch.all(out[:, :, 1:3] == 1) and torch.all(out[:, :, [0, 3]] == 0)
    assert D.paste_padding(x_hat, x, None) is x_hat


def test_attention_losses_average_over_content_cells_only():
    a = torch.zeros(1, 1, 2, 2)
    a[..., 0, :] = 1.0  # full attention on the content row, none on the padding row
    weight = torch.tensor([[[[1.0, 1.0], [0.0, 0.0]]]])
    assert attention_expansion_loss(a, weight).item() == pytest.approx(0.0)
    assert attention_expansion_loss(a).item() == pytest.approx(0.5)  # the padding counted: 0.5
    half = torch.tensor([[[[1.0, 1.0], [0.5, 0.5]]]])  # cells half covered count half
    assert attention_expansion_loss(a, half).item() == pytest.approx((0 + 0 + 0.5 + 0.5) / 3)
    logits, labels = torch.tensor([[2.0, -2.0]]), torch.tensor([0])
    a_ca = torch.zeros(1, 1, 2, 2)
    a_ca[..., 1, :] = 1.0  # anomalous attention only on the padding
    assert complementary_guided_attention_loss(a, a_ca, logits, labels, weight).item() == pytest.approx(0.0)
    assert complementary_guided_attention_loss(a, a_ca, logits, labels).item() == pytest.approx(1.0)


def test_painted_validation_defects_stay_on_the_content():
    images = torch.full((2, 3, 32, 32), 0.5)
    boxes = [(8, 0, 16, 32), (0, 12, 32, 8)]
    for b, img in zip(boxes, images, strict=True):
        img.mul_(D.geometry.box_mask(b, 32))  # black padding, as loaded
    x, masks, labels, _ = paint_validation_set(images, seed=0, copies=2, boxes=boxes)
    for j in range(2, 6):
        box = boxes[j % 2]
        inside = D.geometry.box_mask(box, 32)[0].bool().numpy()
        assert masks[j].any() and not masks[j][~inside].any()
        assert torch.equal(x[j][:, ~torch.from_numpy(inside)], images[j % 2][:, ~torch.from_numpy(inside)])


def _write_tiles(root: Path, rng: np.random.Generator) -> None:
    """An MTD-layout set of 24 x 48 tiles: smooth gray normals, and dark-spot defects with masks."""
    for i in range(14):
        tile = (150 + rng.normal(0, 6, (24, 48))).clip(0, 255).astype(np.uint8)
        (root / "MT_Free" / "Imgs").mkdir(parents=True, exist_ok=True)
        Image.fromarray(tile).save(root / "MT_Free" / "Imgs" / f"f{i}.jpg", quality=95)
    for i in range(4):
        tile = (150 + rng.normal(0, 6, (24, 48))).clip(0, 255).astype(np.uint8)
        mask = np.zeros((24, 48), np.uint8)
        r, c = 6 + 2 * i, 10 + 6 * i
        tile[r : r + 6, c : c + 8], mask[r : r + 6, c : c + 8] = 20, 255
        (root / "MT_Blowhole" / "Imgs").mkdir(parents=True, exist_ok=True)
        Image.fromarray(tile).save(root / "MT_Blowhole" / "Imgs" / f"b{i}.jpg", quality=95)
        Image.fromarray(mask).save(root / "MT_Blowhole" / "Imgs" / f"b{i}.png")


@pytest.fixture(scope="module")
def padded_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiles")
    _write_tiles(root, np.random.default_rng(0))
    out = tmp_path_factory.mktemp("run") / "pad"
    args = [
        "train", "--data", str(root), "--layout", "mtd", "--model", "Du", "--out", str(out),
        "--epochs", "1", "--image-size", "32", "--batch-size", "4", "--device", "cpu", "--no-progress",
        "--set", "model.base_channels=8", "--set", "model.latent_channels=8", "--set", "data.resize=pad",
        "--set", "data.val_fraction=0.3",
    ]  # fmt: skip
    assert main(args) == 0
    assert main(["evaluate", str(out), "--device", "cpu", "--no-progress"]) == 0
    return out


def test_a_padded_run_scores_maps_at_each_tiles_own_shape(padded_run):
    metrics = json.loads((padded_run / "metrics.json").read_text())
    assert 0.0 <= metrics["metrics"]["pixel_auroc"] <= 1.0
    scores = json.loads((padded_run / "scores.json").read_text())
    for row in scores["images"][:3]:
        assert Image.open(padded_run / row["map"]).size == (32, 16)  # the content box of a 24 x 48 tile
    assert main(["validate", str(padded_run), "--device", "cpu"]) == 0


def test_a_padded_runs_score_is_the_residual_mean_over_the_content(padded_run):
    predictor = Predictor.from_run(padded_run, "cpu")
    tile = RunData.load(padded_run).test[0].image_path  # a 24 x 48 tile
    x, valid, sizes = predictor.load_inputs([str(tile)])
    assert sizes == [(24, 48)] and valid is not None and valid.sum() == 16 * 32
    pred = predictor.predict_batch(x, valid)
    assert torch.all(pred.reconstruction[0][:, :8] == x[0][:, :8])  # the padding is the input's
    residual = (x - pred.reconstruction).abs().mean(dim=1)[0, 8:24]  # (16, 32): the content rows
    assert pred.raw_score[0].item() == pytest.approx(residual.mean().item(), rel=1e-5)
    [p] = predictor.predict_paths([tile])
    assert p.anomaly_map.shape == (24, 48)


def test_train_step_scores_the_reconstruction_with_the_inputs_padding():
    """L_R in a padded batch is that of the reconstruction with the input's padding pasted in."""
    torch.manual_seed(0)
    cfg = RunConfig()
    cfg.model = ModelConfig(variant="Du", base_channels=8, latent_channels=8)
    cfg.data.image_size = 32
    model, disc = build_networks(cfg.model, 32, allow_random_init=True)
    valid = torch.stack([D.valid_mask((20, 40), 32, "pad")] * 4)  # (4, 1, 32, 32)
    x = torch.rand(4, 3, 32, 32) * valid  # black padding, as loaded
    frozen_g = torch.optim.SGD(model.parameters(), lr=0.0)
    frozen_d = torch.optim.SGD(disc.parameters(), lr=0.0)
    torch.manual_seed(1)
    terms = train_step(model, disc, frozen_g, frozen_d, x, torch.zeros(4, dtype=torch.long), cfg, valid=valid)
    torch.manual_seed(1)
    _, x_hat = model(x)  # the same reparameterisation noise; no weight moved
    expected = reconstruction_loss(x, D.paste_padding(x_hat, x, valid))
    assert terms["rec"].item() == pytest.approx(expected.item(), rel=1e-5)
    assert terms["rec"].item() != pytest.approx(reconstruction_loss(x, x_hat).item(), rel=1e-3)


@pytest.mark.parametrize("mode", ["pad", "center"])
def test_the_baselines_refuse_a_placement_other_than_stretch(mode):
    cfg = RunConfig()
    cfg.model.variant, cfg.data.resize = "AE-L2", mode
    with pytest.raises(CavgaError, match=f"data.resize: {mode} is for the CAVGA variants; AE-L2 takes stretched"):
        cfg.validate()
    cfg.model.variant = "Du"
    assert cfg.validate().data.resize == mode


def test_a_centered_run_scores_small_tiles_on_their_own_unresampled_pixels(tmp_path):
    """`data.resize: center`: 24 x 48 tiles in a 64 px input sit unscaled; maps come back pixel for pixel."""
    _write_tiles(tmp_path / "tiles", np.random.default_rng(0))
    out = tmp_path / "center"
    args = [
        "train", "--data", str(tmp_path / "tiles"), "--layout", "mtd", "--model", "Du", "--out", str(out),
        "--epochs", "1", "--image-size", "64", "--batch-size", "4", "--device", "cpu", "--no-progress", "--no-check",
        "--set", "model.base_channels=8", "--set", "model.latent_channels=8", "--resize", "center",
        "--set", "data.val_fraction=0.3",
    ]  # fmt: skip
    assert main(args) == 0
    predictor = Predictor.from_run(out, "cpu", ["infer.image_score=paper"])  # the reconstruction difference
    tile = RunData.load(out).test[0].image_path
    x, valid, sizes = predictor.load_inputs([str(tile)])
    assert sizes == [(24, 48)] and valid.sum() == 24 * 48 and torch.all(valid[0, 0, 20:44, 8:56] == 1)
    rgb = torch.from_numpy(np.asarray(Image.open(tile).convert("RGB"), dtype=np.float32) / 255).permute(2, 0, 1)
    assert torch.equal(x[0][:, 20:44, 8:56], rgb)  # the tile's own pixels, unresampled
    pred = predictor.predict_batch(x, valid)
    residual = (x - pred.reconstruction).abs().mean(dim=1)[0, 20:44, 8:56]  # (24, 48): the content
    assert pred.raw_score[0].item() == pytest.approx(residual.mean().item(), rel=1e-5)
    [p] = predictor.predict_paths([tile])
    assert np.allclose(p.anomaly_map, pred.anomaly_map[0, 20:44, 8:56].clamp(0, 1).numpy())  # no resampling back


def test_a_padded_runs_overlay_strips_show_the_tile_not_the_padded_square(padded_run):
    from cavga.visualize import comparison_strip

    strips = sorted((padded_run / "overlays").glob("*.png"))
    assert strips
    blank = np.zeros((16, 32))  # the content box of a 24 x 48 tile in the 32 px square
    expected = comparison_strip(np.zeros((16, 32, 3)), np.zeros((16, 32, 3)), blank, blank, blank, caption="c")
    for path in strips:  # five panels (anomalous, with a mask) or four, each 16 x 32 before enlargement
        assert Image.open(path).height == expected.height, path.name


def test_a_mask_never_marks_the_padding():
    from cavga.image_scores import final_mask, peak_mask

    valid = D.valid_mask((20, 40), 32, "pad")[None]  # (1, 1, 32, 32), content rows 8..23
    amap = torch.where(valid[:, 0] > 0, 0.2, 0.9)  # (1, 32, 32): high only on the padding
    amap[0, 12:16, 10:20] = 0.8  # a defect on the content
    mask = peak_mask(amap, 0.5, 0.0, valid)  # (1, 32, 32)
    assert not mask[0, :8].any() and not mask[0, 24:].any()
    assert mask[0, 12:16, 10:20].all() and mask.sum() == 40

    assert torch.equal(final_mask(amap, torch.ones(1), 0.5, 0.5, 0.01, True, valid), mask)


def test_the_maps_blur_never_sees_the_padding(padded_run, monkeypatch):
    """A map flat on a tile's content stays flat there after infer.map_blur, whatever the padding holds."""
    import cavga.inference as inference

    def flat(model, x, *read):  # 0.3 on the content rows 8..23 of a 24 x 48 tile, 1 on the padding
        amap = torch.ones(x.shape[0], 1, 32, 32)
        amap[:, :, 8:24] = 0.3
        return amap, x, None

    monkeypatch.setattr(inference, "anomaly_evidence", flat)
    predictor = Predictor.from_run(padded_run, "cpu")
    assert predictor.cfg.infer.map_blur > 0
    x, valid, _ = predictor.load_inputs([RunData.load(padded_run).test[0].image_path])
    pred = predictor.predict_batch(x, valid)
    assert torch.allclose(pred.anomaly_map[0, 8:24], torch.tensor(0.3), atol=1e-6)


def test_a_padded_run_fitted_before_the_content_blur_refits_its_map_statistics(padded_run, tmp_path):
    """Statistics of map version 3 were fitted on maps blurred across the padding: a padded run that
    holds them refits them from its held-out normals when loaded, as for any other change of map."""
    import shutil

    from cavga.image_scores import CONTENT_BLUR_MAP_VERSION
    from cavga.runtime import load_checkpoint, save_checkpoint

    old = tmp_path / "old"
    shutil.copytree(padded_run, old)
    state = load_checkpoint(old / "checkpoint.pt")
    assert state["normalizer"]["map_version"] == CONTENT_BLUR_MAP_VERSION
    state["normalizer"]["map_version"] = CONTENT_BLUR_MAP_VERSION - 1
    state["normalizer"]["map_quantiles"] = [0.0] * len(state["normalizer"]["map_quantiles"])
    save_checkpoint(state, old / "checkpoint.pt")
    refitted = Predictor.from_run(old, "cpu").normalizer
    assert refitted.map_version == CONTENT_BLUR_MAP_VERSION
    assert refitted.map_quantiles == Predictor.from_run(padded_run, "cpu").normalizer.map_quantiles


@pytest.mark.parametrize("direction", ["inverse", "auto"])
def test_the_painted_decisions_read_maps_blurred_within_the_content(padded_run, monkeypatch, direction):
    """The maps `auto` settings are decided on are the maps the run answers with: a map flat on each
    image's content stays flat there after the blur, whatever the padding holds."""
    import cavga.painted_decisions as painted_decisions
    from cavga.painting import held_out_images, held_out_normals

    def flat(model, x, way, *read):  # 0.3 on every image's content, 1 on its padding
        ink = x.abs().sum(dim=1, keepdim=True)  # (B, 1, S, S): padding rows and columns are all black
        valid = (ink.sum(dim=3, keepdim=True) > 0) & (ink.sum(dim=2, keepdim=True) > 0)  # (B, 1, S, S)
        return torch.where(valid, 0.3, 1.0), x, None

    monkeypatch.setattr(painted_decisions, "anomaly_evidence", flat)
    predictor = Predictor.from_run(padded_run, "cpu")
    images, boxes = held_out_images(held_out_normals(padded_run), 32, "pad")  # (N, 3, 32, 32)
    assert any(b != (0, 0, 32, 32) for b in boxes)
    args = (predictor.model, images, 4, torch.device("cpu"), direction, "paper", "fixed", boxes)
    _, maps, _ = painted_decisions._painted_decisions(*args, shifted=False, blur=4.0)
    for m in maps:  # each cropped to its content
        assert np.allclose(m, 0.3, atol=1e-6)
