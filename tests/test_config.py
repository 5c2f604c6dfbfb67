import pytest
import yaml

from cavga.config import RunConfig, apply_overrides, from_dict, load_config, save_config, to_dict
from cavga.config.resolve import map_blur
from cavga.errors import CavgaError


def test_defaults_are_the_papers_weights():
    cfg = RunConfig()
    assert (cfg.loss.w_r, cfg.loss.w_adv, cfg.loss.w_ae) == (1.0, 1.0, 0.01)  # Eq. 4
    assert (cfg.loss.w_c, cfg.loss.w_cga) == (0.001, 0.01)  # Eq. 6
    assert cfg.data.anomalous_fraction == 0.02
    assert cfg.infer.mask_threshold == 0.5 and cfg.infer.score_threshold == 0.5
    assert cfg.model.flat_latent_dim == 100


def test_yaml_round_trip_and_types(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  variant: Rw\ntrain:\n  epochs: '7'\n  lr: 1e-3\ndata:\n  category: null\n")
    cfg = load_config(path)
    assert cfg.model.variant == "Rw" and cfg.model.weakly_supervised and cfg.model.arch == "R"
    assert cfg.train.epochs == 7 and cfg.train.lr == 1e-3
    save_config(cfg, tmp_path / "out.yaml")
    again = load_config(tmp_path / "out.yaml")
    assert again == cfg
    assert yaml.safe_load((tmp_path / "out.yaml").read_text())["model"]["variant"] == "Rw"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"modle": {}}, "unknown section 'modle'"),
        ({"name": "t", "models": ["Du"]}, r"unknown section 'name' .*a grid file\? `cavga benchmark --grid`"),
        ({"model": {"varient": "Du"}}, "unknown key model.varient"),
        ({"train": {"epochs": "many"}}, "train.epochs"),
        ({"train": {"epochs": 2.5}}, "train.epochs"),
        ({"train": {"lr": True}}, r"train.lr: True \(read as a boolean: YAML reads yes/no/on/off so\) is not a valid"),
        ({"infer": {"mask_margin": None}}, "infer.mask_margin: cannot be null here"),  # a number or auto
        ({"train": {"patience": None}}, "train.patience: cannot be null here"),
    ],
)
def test_unknown_or_badly_typed_keys_are_rejected(raw, message):
    with pytest.raises(CavgaError, match=message):
        from_dict(raw, "x.yaml")


def test_overrides_from_strings_and_flags():
    cfg = RunConfig()
    apply_overrides(cfg, ["loss.w_ae=0", "model.flat_latent=true", "data.category=bottle"])
    assert cfg.loss.w_ae == 0.0 and cfg.model.flat_latent is True and cfg.data.category == "bottle"
    apply_overrides(cfg, {"train.epochs": None, "train.lr": 0.1})  # None = flag not given
    assert cfg.train.epochs == 100 and cfg.train.lr == 0.1
    with pytest.raises(CavgaError, match="unknown config key"):
        apply_overrides(cfg, ["loss.w_typo=1"])
    with pytest.raises(CavgaError, match="section.key=value"):
        apply_overrides(cfg, ["loss.w_ae"])
    apply_overrides(cfg, ["infer.mask_quantile=0.99"])
    assert cfg.infer.mask_quantile == 0.99
    apply_overrides(cfg, ["infer.mask_quantile=null"])  # a typed null unsets an optional value
    assert cfg.infer.mask_quantile is None
    apply_overrides(cfg, ["infer.mask_quantile=auto"])  # float | str: the word where it is not a number
    assert cfg.infer.mask_quantile == "auto" and RunConfig().infer.mask_quantile == "auto"
    assert from_dict({"infer": {"mask_quantile": "0.995"}}).infer.mask_quantile == 0.995
    with pytest.raises(CavgaError, match="not a valid float"):
        apply_overrides(cfg, ["infer.mask_threshold=null"])


def test_a_word_yaml_reads_as_a_boolean_is_quoted_as_written(tmp_path):
    """YAML reads yes/no/on/off as booleans before the type check: the error quotes the word, not True."""
    with pytest.raises(CavgaError, match=r"^loss.w_ae: 'yes' \(read as a boolean\) is not a valid float$"):
        apply_overrides(RunConfig(), ["loss.w_ae=yes"])
    with pytest.raises(CavgaError, match=r"^train.epochs: 'off' \(read as a boolean\) is not a valid int$"):
        apply_overrides(RunConfig(), ["train.epochs=off"])
    path = tmp_path / "c.yaml"
    path.write_text("train: {epochs: 3}\nloss:\n  w_ae: On\n")
    with pytest.raises(CavgaError, match=r"c.yaml: loss.w_ae: 'On' \(read as a boolean\) is not a valid float$"):
        load_config(path)
    # valid input reads as before: booleans for boolean keys, in a file or from --set
    path.write_text("model:\n  flat_latent: yes\nloss: {w_ae: 0.5}\n")
    cfg = load_config(path)
    assert cfg.model.flat_latent is True and cfg.loss.w_ae == 0.5
    assert apply_overrides(cfg, ["model.flat_latent=off"]).model.flat_latent is False


@pytest.mark.parametrize(
    ("dotted", "value"),
    [
        ("data.layout", "coco"),
        ("model.variant", "Xu"),
        ("data.image_size", 100),
        ("data.anomalous_fraction", 1.5),
        ("infer.mask_threshold", 0.0),
        ("infer.mask_quantile", 1.5),
        ("infer.mask_quantile", "often"),
        ("infer.mask_margin", 1.0),
        ("infer.mask_margin", "often"),
        ("infer.mask_peak_fraction", 1.0),
        ("infer.mask_peak_fraction", "often"),
        ("infer.mask_gate", "score"),
        ("train.validate_every", -1),
        ("train.validate_every", "often"),
        ("train.patience", -1),
        ("train.patience", "often"),
        ("loss.w_ae", -1.0),
        ("loss.reduction", "max"),
        ("model.latent_stride", 32),
        ("model.attention_norm", "batch"),
        ("infer.shifted_map", "sometimes"),
        ("infer.enlarged_map", "twice"),
        ("infer.map_blur", -1.0),
        ("infer.map_blur", 1000.0),
        ("infer.map_blur", "sharp"),
    ],
)
def test_validate_rejects_values(dotted, value):
    cfg = apply_overrides(RunConfig(), {dotted: value})
    with pytest.raises(CavgaError, match=dotted.split(".")[1]):
        cfg.validate()


def test_patience_needs_painted_checks_to_count():
    cfg = apply_overrides(RunConfig(), {"train.validate_every": 0, "train.patience": 2})
    with pytest.raises(CavgaError, match="train.patience: it counts painted checks"):
        cfg.validate()
    apply_overrides(cfg, {"train.patience": 0}).validate()  # 0: train every epoch, checked or not


def test_a_section_given_twice_in_a_file_is_refused(tmp_path):
    path = tmp_path / "twice.yaml"
    path.write_text("data:\n  image_size: 64\ntrain:\n  epochs: 3\ndata:\n  image_size: 128\n")
    with pytest.raises(CavgaError, match="twice.yaml: not valid YAML at line 5, column 1: key 'data' given twice"):
        load_config(path)


def test_missing_and_broken_files(tmp_path):
    with pytest.raises(CavgaError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(CavgaError, match="bad.yaml"):
        load_config(bad)


def test_a_run_saved_before_the_map_blur_reads_it_unblurred():
    """infer.map_blur (4 px by default since session 38): a saved config without it was made, and its
    held-out statistics fitted, on the unblurred map, so it keeps that map; a user's config gets 4."""
    saved = to_dict(RunConfig())
    del saved["infer"]["map_blur"]
    assert from_dict(saved, "checkpoint.pt", saved=True).infer.map_blur == 0.0
    assert map_blur(from_dict(saved)) == 4.0  # auto: 4 px for CAVGA
    saved["model"]["variant"] = "AE-L2"
    assert map_blur(from_dict(saved)) == 0.0  # and none for the baselines (session 57's rule)


def test_a_mask_threshold_given_alone_is_the_threshold_used(tmp_path):
    """infer.mask_threshold without infer.mask_quantile turns the quantile off (null); given with it, or
    read from a run's own config.yaml, nothing changes."""
    cfg = apply_overrides(RunConfig(), ["infer.mask_threshold=0.4"])
    assert cfg.infer.mask_threshold == 0.4 and cfg.infer.mask_quantile is None
    both = apply_overrides(RunConfig(), ["infer.mask_threshold=0.4", "infer.mask_quantile=0.98"])
    assert both.infer.mask_quantile == 0.98
    assert apply_overrides(RunConfig(), ["infer.map_blur=2"]).infer.mask_quantile == "auto"
    assert from_dict({"infer": {"mask_threshold": 0.3}}).infer.mask_quantile is None
    saved = to_dict(RunConfig())
    saved["infer"]["mask_threshold"] = 0.3
    assert from_dict(saved, saved=True).infer.mask_quantile == "auto"  # every key there, as resolved


def test_predict_with_a_mask_threshold_set_uses_it(tmp_path_factory):
    from _tiny_run import shared_run
    from cavga.inference import Predictor

    run = shared_run(tmp_path_factory)
    decided = Predictor.from_run(run, "cpu").mask_threshold
    assert decided != pytest.approx(0.4)
    assert Predictor.from_run(run, "cpu", ["infer.mask_threshold=0.4"]).mask_threshold == pytest.approx(0.4)


def test_a_grid_reads_mask_threshold_and_mask_quantile_together_in_either_order():
    from cavga.grid.spec import set_values

    for values in (
        {"infer.mask_quantile": 0.98, "infer.mask_threshold": 0.4},
        {"infer.mask_threshold": 0.4, "infer.mask_quantile": 0.98},
    ):
        cfg = set_values(RunConfig(), values)
        assert cfg.infer.mask_quantile == 0.98 and cfg.infer.mask_threshold == 0.4
    assert set_values(RunConfig(), {"infer.mask_threshold": 0.4}).infer.mask_quantile is None
    assert set_values(RunConfig(), {"infer.mask_quantile": None}).infer.mask_quantile is None
