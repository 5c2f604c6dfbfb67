"""The "auto" model settings (cavga.config.resolve): a pretrained encoder where its weights can be
had, frozen, with mu_energy; from scratch (with a warning) where they cannot; explicit values kept;
what a run records is the concrete setting, and runs saved before keep what they did."""

import warnings

import pytest
import torch
import yaml

import cavga.config.resolve as resolve
from _tiny_run import make_data
from cavga.cli import main
from cavga.config import ModelConfig, PretrainedStartMissing, RunConfig, from_dict, resolved, to_dict
from cavga.errors import CavgaError
from cavga.grid import build_cells, load_grid
from cavga.networks import CAVGA
from cavga.runfolder import check_resumable


def _cfg(variant="Du", **model):
    cfg = RunConfig()
    cfg.model.variant = variant
    for k, v in model.items():
        setattr(cfg.model, k, v)
    return cfg


@pytest.fixture
def package(monkeypatch):
    """The optional Lite0 package counts as installed (any importable module stands in for it)."""
    monkeypatch.setattr(resolve, "TEACHER_PACKAGE", "json")


def _settings(cfg):
    m = cfg.model
    return m.encoder_init, m.freeze_encoder, m.attention_score


def test_the_defaults_are_pretrained_frozen_energy_where_the_teacher_is_there(package):
    cfg = RunConfig()
    out = resolved(cfg)
    assert _settings(out) == ("distill", True, "mu_energy")
    assert out.validate().model.label == "CAVGA-Du (distilled from EfficientNet-Lite0, frozen)"
    assert _settings(cfg) == ("auto", "auto", "auto")  # the caller's config is not changed
    assert _settings(resolved(_cfg("Dw"))) == ("distill", True, "mu_energy")
    # CAVGA-R: its own ImageNet backbone, frozen; with a random-init fallback or no weights, trained
    assert _settings(resolved(_cfg("Ru"))) == ("dcgan", True, "mu_energy")
    assert _settings(resolved(_cfg("Ru", backbone_weights="none"))) == ("dcgan", False, "mu_sum")
    fallback = _cfg("Ru")
    fallback.train.allow_random_init = True
    assert _settings(resolved(fallback)) == ("dcgan", False, "mu_sum")
    assert _settings(resolved(_cfg("AE-L2"))) == ("dcgan", False, "mu_sum")  # as the baselines always saved


def test_auto_takes_cavga_rw_attention_one_frozen_stage_below_z(package):
    assert resolved(_cfg("Rw")).model.attention_layer == 1  # ImageNet backbone, frozen
    assert resolved(_cfg("Rw", backbone_weights="none")).model.attention_layer == 0  # trained: the paper's map
    assert resolved(_cfg("Ru")).model.attention_layer == 0
    assert resolved(_cfg("Dw")).model.attention_layer == 0  # distilled and frozen, but not measured there
    assert resolved(_cfg("Rw", attention_layer=0)).model.attention_layer == 0  # explicit: kept


def test_the_epoch_is_chosen_on_painted_defects_for_a_frozen_pretrained_encoder(package):
    assert resolved(RunConfig()).train.validate_every == 20  # distilled, frozen
    assert resolved(_cfg("Ru")).train.validate_every == 20  # ImageNet backbone, frozen
    assert resolved(_cfg(freeze_encoder=False)).train.validate_every == 0  # fine-tuned: the last epoch
    assert resolved(_cfg(encoder_init="dcgan")).train.validate_every == 0  # from scratch, as the paper
    assert resolved(_cfg("AE-L2")).train.validate_every == 0
    no_held_out = RunConfig()
    no_held_out.data.val_fraction = 0.0  # nothing to paint
    assert resolved(no_held_out).train.validate_every == 0
    explicit = RunConfig()
    explicit.train.validate_every = 5
    assert resolved(explicit).train.validate_every == 5
    assert RunConfig().train.validate_every == "auto"


def test_auto_tries_three_seeds_where_the_epoch_is_chosen_every_20(package):
    assert resolved(RunConfig()).train.restarts == 3  # distilled, frozen: checked every 20 epochs
    assert resolved(_cfg("Ru")).train.restarts == 3
    assert resolved(_cfg(encoder_init="dcgan")).train.restarts == 1  # from scratch: the last epoch, one seed
    pinned = RunConfig()
    pinned.train.validate_every = 0  # no painted check to compare seeds at
    assert resolved(pinned).train.restarts == 1
    assert RunConfig().train.restarts == "auto"


def test_auto_patience_stops_after_two_checks_where_restarts_apply(package):
    assert resolved(RunConfig()).train.patience == 2  # distilled, frozen: checked every 20 epochs
    assert resolved(_cfg("Ru")).train.patience == 2
    assert resolved(_cfg(encoder_init="dcgan")).train.patience == 0  # the last epoch: nothing to stop on
    every5 = RunConfig()
    every5.train.validate_every = 5  # the stored evidence is at 20-epoch checks
    assert resolved(every5).train.patience == 0
    explicit = RunConfig()
    explicit.train.patience = 3
    assert resolved(explicit).train.patience == 3
    assert RunConfig().train.patience == "auto"


def test_auto_shares_the_distillation_for_cavga_u_not_cavga_w(package):
    assert resolved(RunConfig()).distill.share is True  # CAVGA-Du
    assert resolved(_cfg("Dw")).distill.share is False  # its candidates distil their own
    explicit = _cfg("Dw")
    explicit.distill.share = True
    assert resolved(explicit).distill.share is True
    assert RunConfig().distill.share == "auto"
    bad = RunConfig()
    bad.distill.share = "sometimes"
    with pytest.raises(CavgaError, match="distill.share: 'sometimes' is not true, false or auto"):
        bad.validate()


def test_without_the_teacher_cavga_d_starts_from_scratch_and_says_so():
    with pytest.warns(PretrainedStartMissing, match=r'pip install "cavga\[pretrained\]"'):
        out = resolved(RunConfig())
    assert _settings(out) == ("dcgan", False, "mu_sum")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an explicit choice, or CAVGA-R, is not warned about
        assert _settings(resolved(_cfg(encoder_init="dcgan"))) == ("dcgan", False, "mu_sum")
        assert _settings(resolved(_cfg("Ru")))[1] is True


def test_explicit_values_are_kept(package):
    assert _settings(resolved(_cfg(freeze_encoder=False))) == ("distill", False, "mu_sum")
    assert _settings(resolved(_cfg(attention_score="z_sum"))) == ("distill", True, "z_sum")
    assert _settings(resolved(_cfg(encoder_init="dcgan"))) == ("dcgan", False, "mu_sum")
    assert _settings(resolved(_cfg("Ru", freeze_encoder=False, attention_score="mu_energy"))) == (
        "dcgan",
        False,
        "mu_energy",
    )


def test_a_teacher_file_counts_and_a_missing_file_does_not(tmp_path):
    path = tmp_path / "lite0.pth"
    assert not resolve.teacher_available(str(path))
    path.write_bytes(b"weights")
    assert resolve.teacher_available(str(path))
    assert not resolve.teacher_available("imagenet")  # tests/conftest.py: the package is absent


def test_a_network_built_on_its_own_is_from_scratch(package):
    model = CAVGA(ModelConfig(base_channels=8, latent_channels=8), 32)
    assert (model.cfg.encoder_init, model.cfg.freeze_encoder, model.cfg.attention_score) == (
        "dcgan",
        False,
        "mu_sum",
    )
    assert all(p.requires_grad for p in model.encoder.parameters())


def test_saved_configs_without_the_keys_read_their_old_values():
    scratch = to_dict(resolved(_cfg(encoder_init="dcgan")))
    for key in ("encoder_init", "freeze_encoder", "attention_score", "attention_layer"):
        del scratch["model"][key]  # a config.yaml from before these keys
    assert _settings(from_dict(scratch, "config.yaml", saved=True)) == ("dcgan", False, "mu_sum")
    assert from_dict(scratch, "config.yaml", saved=True).model.attention_layer == 0
    assert _settings(from_dict(scratch, "user.yaml")) == ("auto", "auto", "auto")  # a user's file: the defaults
    # resuming that run with its own settings, now written out, is no change
    check_resumable({"config": scratch}, resolved(_cfg(encoder_init="dcgan")), None)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_data(tmp_path_factory.mktemp("resolve-data"))


def _train(data, out, *extra):
    args = [
        "train", "--data", str(data), "--layout", "mvtec", "--category", "brick", "--model", "Du",
        "--out", str(out), "--epochs", "1", "--image-size", "32", "--batch-size", "4", "--device", "cpu",
        "--no-progress", "--no-check", "--set", "model.base_channels=8", "--set", "model.latent_channels=8",
        "--set", "data.val_fraction=0.3", "--set", "distill.epochs=1", *extra,
    ]  # fmt: skip
    assert main(args) == 0
    return yaml.safe_load((out / "config.yaml").read_text())["model"]


@pytest.mark.filterwarnings("always::cavga.config.resolve.PretrainedStartMissing")
def test_cavga_train_records_what_auto_became(data, teacher_file, tmp_path, capsys):
    model = _train(data, tmp_path / "pretrained", "--set", f"distill.teacher_weights={teacher_file}")
    assert (model["encoder_init"], model["freeze_encoder"], model["attention_score"]) == ("distill", True, "mu_energy")
    state = torch.load(tmp_path / "pretrained" / "checkpoint.pt", map_location="cpu", weights_only=False)
    assert state["backbone_weights"].startswith("distilled from EfficientNet-Lite0")
    assert state["config"]["model"]["freeze_encoder"] is True
    capsys.readouterr()
    model = _train(data, tmp_path / "scratch")
    assert (model["encoder_init"], model["freeze_encoder"], model["attention_score"]) == ("dcgan", False, "mu_sum")
    assert "cavga: warning: CAVGA-D starts from scratch" in capsys.readouterr().err


def test_grid_cells_hold_concrete_settings(package, tmp_path):
    spec = tmp_path / "grid.yaml"
    spec.write_text("name: t\ndata: {root: x, layout: mvtec}\ncategories: [a]\nseeds: [0]\nmodels: [Du, Ru]\n")
    cells = build_cells(load_grid(spec), tmp_path / "out", validate=False)
    assert [_settings(c.cfg) for c in cells] == [("distill", True, "mu_energy"), ("dcgan", True, "mu_energy")]
    assert [c.cfg.train.validate_every for c in cells] == [20, 20]


def test_a_named_teacher_file_that_is_missing_is_an_error_not_a_fallback(tmp_path):
    """Under encoder_init auto a teacher file the user named but that is not there stops the run with
    the path, rather than warning about the package and training from scratch; a frozen encoder asked
    for without any teacher says the teacher is missing, not that it was started from DCGAN's init."""
    cfg = RunConfig()
    cfg.distill.teacher_weights = str(tmp_path / "lite0.pth")
    with pytest.raises(CavgaError, match=f"distill.teacher_weights: {tmp_path / 'lite0.pth'}: file not found"):
        resolved(cfg)
    frozen = _cfg(freeze_encoder=True)
    with pytest.raises(CavgaError, match="EfficientNet-Lite0 teacher is not installed"):
        resolved(frozen)
    saved = _cfg(encoder_init="distill")  # a saved run's concrete setting: the teacher is read only if it distils
    saved.distill.teacher_weights = str(tmp_path / "moved.pth")
    assert _settings(resolved(saved))[0] == "distill"


def test_the_distill_section_is_checked_only_where_cavga_d_distils():
    """distill.* is read only by CAVGA-D's distilled start: a run that does not distil is not stopped by it."""
    for variant, init in (("Du", "dcgan"), ("Ru", "auto"), ("AE-L2", "auto")):
        cfg = _cfg(variant, encoder_init=init)
        cfg.distill.epochs = 0
        cfg.validate()
    for init in ("auto", "distill"):
        cfg = _cfg(encoder_init=init)
        cfg.distill.epochs = 0
        with pytest.raises(CavgaError, match="distill.epochs: 0 must be >= 1"):
            cfg.validate()
    baseline = _cfg("AE-L2", encoder_init="distill")
    with pytest.raises(CavgaError, match="distill is for CAVGA-D; AE-L2 has no pretrained start"):
        baseline.validate()
