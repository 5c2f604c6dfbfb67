"""infer.score_fade: infer.image_score: auto decided on painted defects faded to U(score_fade, 1)."""

import pytest
import torch

from _painted_runs import small_data, tiny_config
from _scripts import benchmark_script
from cavga import painted_decisions
from cavga.config import RunConfig, resolve
from cavga.errors import CavgaError
from cavga.inference import Predictor
from cavga.painting import held_out_images, held_out_normals
from cavga.redecide import redecide_run
from cavga.runtime import CHECKPOINT, load_checkpoint
from cavga.train import train


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A finished 32 px CAVGA-Du run with held-out normals (its image score decided at full strength)."""
    root = small_data(tmp_path_factory.mktemp("data"))
    return train(tiny_config(root, 1), tmp_path_factory.mktemp("runs") / "run", progress=False).parent


FADES = [("Rw", "auto", "auto", 0.3), ("Rw", "auto", 0.5, 0.5), ("Rw", 0.7, "auto", 0.7), ("Du", "auto", "auto", 1.0),
         ("Dw", "auto", "auto", 1.0), ("Ru", "auto", "auto", 1.0), ("Du", 0.4, "auto", 0.4),
         ("AE-L2", "auto", "auto", 1.0), ("PatchCore", "auto", "auto", 1.0)]  # fmt: skip


@pytest.mark.parametrize(("variant", "asked", "mask_fade", "fade"), FADES)
def test_the_auto_score_fade_is_the_mask_fade_for_cavga_rw_and_full_strength_elsewhere(variant, asked, mask_fade, fade):
    cfg = RunConfig()
    cfg.model.variant, cfg.infer.score_fade, cfg.infer.mask_fade = variant, asked, mask_fade
    assert resolve.score_fade(cfg) == fade
    assert resolve.resolved(cfg).infer.score_fade == fade  # what config.yaml records


@pytest.mark.parametrize("bad", ["faded", 0, 1.5, -0.2])
def test_a_score_fade_outside_0_to_1_is_an_error_that_names_the_key(bad):
    cfg = RunConfig()
    cfg.infer.score_fade = bad
    with pytest.raises(CavgaError, match="infer.score_fade"):
        cfg.validate()


def test_the_image_score_is_chosen_on_the_faded_paint_and_the_full_strength_numbers_kept(run, tmp_path):
    """``cavga redecide --set infer.score_fade=0.5`` on the same weights: the choice is the best score on
    the faded painted set, whose numbers are what benchmarks/image_score_fade.py measures there through
    the predictor; the full-strength numbers are the run's own decision's, kept beside them."""
    before = load_checkpoint(run / CHECKPOINT)["image_score"]
    assert "full_strength_image_auroc" not in before  # CAVGA-Du: auto is 1, as before
    redecide_run(run, tmp_path / "faded", ["infer.score_fade=0.5"], "cpu")
    after = load_checkpoint(tmp_path / "faded" / CHECKPOINT)["image_score"]
    assert after["full_strength_image_auroc"] == before["validation_image_auroc"]
    assert "faded to U(0.5, 1)" in after["protocol"]
    faded = after["validation_image_auroc"]
    assert after["image_score"] == next(k for k in ("paper", "map", "bce") if faded[k] == max(faded.values()))
    probe = benchmark_script("image_score_fade").probe(tmp_path / "faded", [1.0, 0.5])
    assert probe["painted"]["0.5"] == pytest.approx(faded, abs=2e-4)
    assert probe["painted"]["1.0"] == pytest.approx(before["validation_image_auroc"], abs=2e-4)
    assert probe["painted"]["0.5"] != probe["painted"]["1.0"]  # the fading changes the ranking here
    assert set(probe["test"]) == {"paper", "map", "bce"} and probe["chosen"]["0.5"] in probe["test"]


def test_the_faded_numbers_choose_where_they_and_the_full_strength_ones_disagree(run, monkeypatch):
    model = Predictor.from_run(run, "cpu").model
    images, boxes = held_out_images(held_out_normals(run), 32)  # (N, 3, S, S)
    args = (model, images, 4, torch.device("cpu"))
    full = painted_decisions.decide_on_painted(*args, boxes=boxes)["image_score"]["validation_image_auroc"]
    other = next(k for k in ("paper", "map", "bce") if full[k] < max(full.values()))  # not the full-strength choice
    faded = {k: 0.9 if k == other else 0.2 for k in full}
    monkeypatch.setattr(painted_decisions, "_faded_image_aurocs", lambda *a: faded)
    decided = painted_decisions.decide_on_painted(*args, boxes=boxes, score_fade=0.5)["image_score"]
    assert decided["image_score"] == other
    assert decided["validation_image_auroc"] == faded and decided["full_strength_image_auroc"] == full


def test_the_epoch_checks_guard_reads_the_full_strength_bce(tmp_path):
    """With the image score decided on faded paint, the guard (cavga.epoch_choice) still reads the
    BCE's painted image AUROC at full strength, the number its thresholds were set on."""
    cfg = tiny_config(small_data(tmp_path / "data"), 1, every=1)
    cfg.infer.score_fade = 0.5
    state = load_checkpoint(train(cfg, tmp_path / "run", progress=False))
    decided = state["image_score"]
    assert state["epoch_choice"]["bce"][1] == decided["full_strength_image_auroc"]["bce"]
    assert decided["full_strength_image_auroc"] != decided["validation_image_auroc"]
