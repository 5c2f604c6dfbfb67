"""infer.attention_direction two_sided: CAVGA-u's attention read as its departure from its normal level."""

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from _painted_runs import small_data, tiny_config
from cavga import normal_level
from cavga.attention import departure, gaussian_blur
from cavga.config import DIRECTION_CANDIDATES, ModelConfig, RunConfig
from cavga.config.checks import check_run_config
from cavga.errors import CavgaError
from cavga.inference import Predictor, eval_loader
from cavga.map_choice import resolved_direction
from cavga.metrics import pixel_auroc
from cavga.networks import CAVGA
from cavga.painted_decisions import decide_on_painted
from cavga.painting import painted_set, predict_painted
from cavga.runfolder import RunData
from cavga.runtime import CHECKPOINT, load_checkpoint, save_checkpoint
from cavga.train import train
from cavga.validation import validate_run


def test_departure_is_high_where_the_attention_rises_and_where_it_falls():
    level = torch.full((4, 4), 0.5)
    level[:, 2:] = 1.0  # part of the image whose normal attention is higher
    s = level.clone()[None, None].repeat(2, 1, 1, 1)  # (2, 1, 4, 4), both images normal everywhere
    s[0, 0, 0, 0] = 1.5  # a defect that raises A, on the low part
    s[1, 0, 3, 3] = 0.0  # one that lowers A, on the high part
    d = departure(s, level)  # (2, 1, 4, 4)
    assert d[0, 0, 0, 0] == pytest.approx(1.0 / 2.0) and d[1, 0, 3, 3] == pytest.approx(1.0 / 2.0)  # d / (1 + d)
    normal = torch.ones_like(d, dtype=torch.bool)
    normal[0, 0, 0, 0] = normal[1, 0, 3, 3] = False
    assert torch.all(d[normal] == 0)  # every other pixel sits at its own level
    masks = (~normal)[:, 0].numpy()
    assert pixel_auroc(d[:, 0].numpy(), masks) == 1.0
    assert pixel_auroc(s[:, 0].numpy(), masks) < 0.9  # A itself misses the fall (and 1 - A the rise)


def test_the_normal_level_is_each_pixels_median_over_the_images_that_cover_it():
    s = torch.stack([torch.full((2, 2), v) for v in (1.0, 2.0, 9.0)])  # (3, 2, 2)
    assert torch.all(normal_level.median_level(s) == 2.0)
    valid = torch.ones_like(s, dtype=torch.bool)
    valid[2, 0, 0] = False  # the 9 there is padding
    valid[:, 1, 1] = False  # a pixel no image's content covers
    level = normal_level.median_level(s, valid)
    assert level[0, 0] == 1.0  # median of 1 and 2 (torch: the lower middle), the padding left out
    assert level[1, 1] == 0.0 and level[0, 1] == 2.0


def test_the_painted_decision_reads_each_image_against_the_other_clean_images(monkeypatch):
    # s of each image = its first channel; 3 clean held-out images at 0, 1, 2, then one painted copy of each
    monkeypatch.setattr(normal_level, "scale_free_maps", lambda model, x, shifted, enlarged: x[:, 0])
    clean = torch.stack([torch.full((3, 2, 2), v) for v in (0.0, 1.0, 2.0)])  # (3, 3, 2, 2)
    x = torch.cat([clean, clean + 4.0])  # (6, 3, 2, 2): copy k of image k painted by +4
    d = normal_level.held_out_departures(None, x, 3, 4, "cpu", False, False)  # (6, 1, 2, 2)
    # levels without image 0: median(1, 2) = 1; without 1: median(0, 2) = 0; without 2: median(0, 1) = 0
    want = torch.tensor([1.0, 1.0, 2.0, 3.0, 5.0, 6.0])  # |s - level of the others|
    assert torch.allclose(d[:, 0, 0, 0], want / (1 + want))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One tiny CAVGA-Du run trained with the two-sided map, and one with the defaults."""
    root = small_data(tmp_path_factory.mktemp("data"))
    out = tmp_path_factory.mktemp("runs")
    cfg = tiny_config(root, 1)
    cfg.infer.attention_direction = "two_sided"
    two_sided = train(cfg, out / "two-sided", progress=False).parent
    return two_sided, train(tiny_config(root, 1), out / "default", progress=False).parent


def test_a_two_sided_run_stores_its_level_and_maps_departures_from_it(runs):
    run = runs[0]
    state = load_checkpoint(run / CHECKPOINT)
    predictor = Predictor.from_run(run, "cpu")
    cfg, size = predictor.cfg, predictor.cfg.data.image_size
    assert cfg.infer.attention_direction == "two_sided" and state["attention_direction"] is None  # asked, not decided
    level = state[normal_level.LEVEL_KEY]
    assert level.shape == (size, size)
    shifted, enlarged = cfg.infer.shifted_map is True, cfg.infer.enlarged_map is True
    held_out = RunData.load(run).val
    normals = eval_loader([r for r in held_out if r.label == 0], cfg)
    refit = normal_level.fit_level(predictor.model, normals, "cpu", shifted, enlarged)
    assert torch.allclose(refit, level)  # the median over the held-out normals, as stored
    # a level of our own (the tiny run's attention may be flat): each pixel's map is its departure from it
    level = torch.linspace(0.0, 0.6, size * size).reshape(size, size)
    predictor = Predictor(predictor.model, cfg, predictor.normalizer, torch.device("cpu"), level)
    x = torch.rand(3, 3, size, size)
    s = normal_level.scale_free_maps(predictor.model, x, shifted, enlarged)  # (3, S, S)
    want = gaussian_blur(departure(s[:, None], level)[:, 0], cfg.infer.map_blur).clamp(0, 1)
    got = predictor.predict_batch(x).anomaly_map  # (3, S, S)
    assert torch.allclose(got, want, atol=1e-5) and got.std() > 0.01


def test_auto_chooses_between_one_way_readings_only_and_validation_reads_the_asked_map(runs):
    decided = load_checkpoint(runs[1] / CHECKPOINT)["attention_direction"]
    assert set(decided["validation_pixel_auroc_by_direction"]) == {"inverse", "direct"}  # two_sided is opt-in
    validation = validate_run(runs[0], "cpu")
    assert validation["attention_direction"] == "two_sided"  # the painted check reads the map asked for
    assert json.loads((runs[0] / "validation.json").read_text())["metrics"] == validation["metrics"]


def test_any_cavga_u_run_can_be_read_two_sided(runs):
    default = runs[1]
    assert normal_level.LEVEL_KEY in load_checkpoint(default / CHECKPOINT)  # stored whatever the direction
    predictor = Predictor.from_run(default, "cpu", ["infer.attention_direction=two_sided"])
    assert predictor.predict_batch(torch.rand(2, 3, 32, 32)).anomaly_map.shape == (2, 32, 32)


def test_a_run_without_a_stored_level_names_the_command_that_fits_it(runs, tmp_path):
    import shutil

    old = shutil.copytree(runs[1], tmp_path / "old")
    state = load_checkpoint(old / CHECKPOINT)
    del state[normal_level.LEVEL_KEY]  # as a run trained before the level was stored
    save_checkpoint(state, old / CHECKPOINT)
    with pytest.raises(CavgaError, match="cavga redecide .* --set infer.attention_direction=two_sided"):
        Predictor.from_run(old, "cpu", ["infer.attention_direction=two_sided"])
    Predictor.from_run(old, "cpu")  # as decided, it needs none


@pytest.mark.parametrize(("variant", "want"), [("Du", "two_sided"), ("Ru", "two_sided"), ("Dw", "inverse")])
def test_two_sided_is_a_cavga_u_direction(variant, want):
    cfg = RunConfig()
    cfg.model.variant, cfg.infer.attention_direction = variant, "two_sided"
    check_run_config(cfg)
    assert resolved_direction(cfg) == want  # CAVGA-w's map is A_ca whatever the direction says


def test_the_image_score_on_faded_paint_reads_the_two_sided_map(tmp_path):
    cfg = tiny_config(small_data(tmp_path / "data"), 1)
    cfg.infer.attention_direction, cfg.infer.score_fade = "two_sided", 0.5
    run = train(cfg, tmp_path / "run", progress=False).parent
    decided = load_checkpoint(run / CHECKPOINT)["image_score"]
    assert "faded to U(0.5, 1)" in decided["protocol"] and "full_strength_image_auroc" in decided
    assert set(decided["validation_image_auroc"]) == {"paper", "map", "bce"}  # the map's peak read two-sided, faded


class _Signed(torch.nn.Module):
    """An encoder of one block whose every channel is each 8x8 cell's mean colour: on a mid-grey
    surface, darker paint lowers A and lighter paint raises it."""

    stride = 8

    def __init__(self, channels: int):
        super().__init__()
        self.out_channels = channels
        self.body = torch.nn.Sequential(torch.nn.Identity())

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        v = torch.nn.functional.avg_pool2d(x.mean(dim=1, keepdim=True), 8)  # (B, 1, S/8, S/8)
        return v.expand(-1, self.out_channels, -1, -1).contiguous()


def _two_way_model() -> CAVGA:
    torch.manual_seed(0)
    model = CAVGA(ModelConfig(variant="Du", base_channels=8, latent_channels=4), 64, allow_random_init=True)
    model.encoder = _Signed(model.encoder.out_channels)
    with torch.no_grad():
        for m in model.to_mu.modules():
            if getattr(m, "weight", None) is not None:
                m.weight.fill_(0.05)  # a positive read-out: A follows the cell's brightness
                m.bias.zero_()
        model.cam_scale.fill_(1.0)
        clean_peak = normal_level.scale_free_maps(model, torch.full((1, 3, 64, 64), 0.5), False, False).max()
        model.cam_scale.fill_(2 * float(clean_peak))  # a running peak: the plain surface's A at 0.5, room both ways
    return model


@pytest.mark.parametrize("fade", [1.0, 0.5])
def test_auto_weighs_two_sided_only_when_asked_and_chooses_it_where_paint_moves_a_both_ways(fade):
    images = torch.full((4, 3, 64, 64), 0.5)  # (N, 3, S, S) mid-grey held-out normals
    args = (_two_way_model(), images, 4, torch.device("cpu"))
    one_sided = decide_on_painted(*args, image_score="paper", direction_fade=fade)["attention_direction"]
    assert set(one_sided["validation_pixel_auroc_by_direction"]) == {"inverse", "direct"}
    asked = {"directions": DIRECTION_CANDIDATES["with_two_sided"], "direction_fade": fade}
    chosen = decide_on_painted(*args, image_score="paper", **asked)["attention_direction"]
    by_way = chosen["validation_pixel_auroc_by_direction"]
    assert chosen["attention_direction"] == "two_sided" and chosen["candidates"] == ["inverse", "direct", "two_sided"]
    assert by_way["two_sided"] > max(by_way["inverse"], by_way["direct"]) + 0.05  # either one way misses a kind
    for way in ("inverse", "direct"):  # the same painted set for the one-way readings, whatever the candidates
        assert by_way[way] == one_sided["validation_pixel_auroc_by_direction"][way]
    assert ("faded to U(0.5, 1)" in chosen["protocol"]) is (fade < 1)


def test_the_faded_direction_choice_ranks_the_ways_on_fainter_paint_and_the_rest_reads_full_strength():
    images = torch.full((4, 3, 64, 64), 0.5)  # (N, 3, S, S)
    args = (_two_way_model(), images, 4, torch.device("cpu"))
    three = DIRECTION_CANDIDATES["with_two_sided"]
    full, faded = (
        decide_on_painted(*args, image_score="paper", directions=three, direction_fade=f) for f in (1.0, 0.2)
    )
    by_full = full["attention_direction"]["validation_pixel_auroc_by_direction"]
    by_faded = faded["attention_direction"]["validation_pixel_auroc_by_direction"]
    assert by_full != by_faded  # another painted set: the same defects, blended with the clean image
    assert full["attention_direction"]["attention_direction"] == faded["attention_direction"]["attention_direction"]
    # the shift decision after it reads the chosen map on the full-strength set, as without the fade
    assert faded["shifted_map"] == full["shifted_map"]
    assert full["shifted_map"]["validation_pixel_auroc_by_shift"]["off"] == by_full["two_sided"]


def test_training_decides_among_three_ways_when_asked_and_the_predictor_reads_the_choice(tmp_path):
    cfg = tiny_config(small_data(tmp_path / "data"), 1)
    cfg.infer.direction_candidates, cfg.infer.direction_fade = "with_two_sided", 0.5
    run = train(cfg, tmp_path / "run", progress=False).parent
    decided = load_checkpoint(run / CHECKPOINT)["attention_direction"]
    assert set(decided["validation_pixel_auroc_by_direction"]) == {"inverse", "direct", "two_sided"}
    assert "faded to U(0.5, 1)" in decided["protocol"]
    assert Predictor.from_run(run, "cpu").cfg.infer.attention_direction == decided["attention_direction"]


@pytest.mark.parametrize(("key", "value"), [("direction_candidates", "all"), ("direction_fade", 0.0)])
def test_direction_candidates_and_fade_are_checked(key, value):
    cfg = RunConfig()
    setattr(cfg.infer, key, value)
    with pytest.raises(CavgaError, match=f"infer.{key}"):
        check_run_config(cfg)


def test_painted_answers_of_a_two_sided_run_read_each_image_against_the_other_images_level(runs, monkeypatch):
    predictor = Predictor.from_run(runs[0], "cpu")  # a two-sided run, its network swapped for one whose A moves
    predictor.model, predictor.level = _two_way_model(), torch.zeros(64, 64)
    stored = predictor.level
    images = torch.stack([torch.full((3, 64, 64), v) for v in (0.4, 0.5, 0.6)])  # (n, 3, S, S) held-out normals
    seen = []

    def answers(x, valid=None, level=None):  # what predict_painted reads of an answer; the raw score names the image
        seen.append((x.clone(), (predictor.level if level is None else level).clone()))
        zeros = torch.zeros(len(x), 64, 64)
        return SimpleNamespace(
            reconstruction=x,
            raw_score=x.flatten(1).mean(1),
            label=torch.zeros(len(x)),
            anomaly_map=zeros,
            residual_map=zeros,
            residual_score=torch.zeros(len(x)),
        )

    monkeypatch.setattr(predictor, "predict_batch", answers)
    cols, _, labels, _, _ = predict_painted(predictor, images, None, 0, 1)
    s = normal_level.scale_free_maps(predictor.model, images, *predictor.map_views)  # (n, S, S)
    want = normal_level.leave_one_out_levels(s)  # (n, S, S)
    assert not torch.allclose(want[0], want[2], atol=1e-3) and not torch.allclose(want[0], stored, atol=1e-3)
    assert [len(x) for x, _ in seen] == [2, 2, 2]  # image j, clean and its one painted copy
    for j, (x, level) in enumerate(seen):
        assert torch.equal(x[0], images[j]) and torch.allclose(level, want[j])
    assert predictor.level is stored  # the run's own level, untouched
    x = painted_set(images, None, 0, 1)[0]  # the answers come back in the painted set's order
    assert list(labels) == [0, 0, 0, 1, 1, 1]
    assert np.allclose(cols["raw"], x.flatten(1).mean(1).numpy())


def test_a_batch_can_be_read_against_another_level_than_the_runs(runs):
    predictor = Predictor.from_run(runs[0], "cpu")
    stored = predictor.level.clone()
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))  # (B, 3, S, S)
    own = predictor.predict_batch(x).anomaly_map  # (B, S, S)
    other = predictor.predict_batch(x, level=stored + 1.0).anomaly_map  # every pixel's level one peak higher
    assert (other - own).abs().min() > 0.1  # another level: another departure everywhere
    assert torch.equal(predictor.level, stored) and torch.equal(predictor.predict_batch(x).anomaly_map, own)
