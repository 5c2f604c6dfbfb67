"""The audit of validate, evaluate and predict on a finished run: inference settings that would go unused
said in one warning, validate reading the run's settings from its checkpoint under its lock, and negative
seeds refused before anything is written. Every test failed before its fix."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import pytest

from _tiny_run import train_tiny
from cavga import validation
from cavga.asked_settings import DecidedUnderOtherSettings, EditedRunConfig
from cavga.cli import main
from cavga.demo_data import generate_demo_dataset
from cavga.errors import CavgaError
from cavga.evaluate import evaluate_run
from cavga.inference import Predictor
from cavga.mask_threshold import mask_candidates
from cavga.redecide import infer_settings, redecide_in_place
from cavga.runfolder import saved_run
from cavga.runlock import LOCK_FILE, RunLock
from cavga.validation import VALIDATION_FILE, validate_run

OURS = (DecidedUnderOtherSettings, EditedRunConfig)


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A tiny finished CAVGA-Du run (4 held-out normals; mask quantile and peak fraction auto, margin 0)."""
    return train_tiny(tmp_path_factory)


@pytest.fixture
def run(finished, tmp_path) -> Path:
    """A copy of the finished run for one test to change."""
    return Path(shutil.copytree(finished, tmp_path / "run"))


def _ours(caught) -> list[str]:
    return [str(w.message) for w in caught if issubclass(w.category, OURS)]


# ------------------------------------------------ settings only training's end acts on


def test_a_decision_only_setting_at_evaluate_is_warned_of_once_and_metrics_record_the_runs_own(run):
    asked = ["infer.mask_fade=0.9", "infer.mask_copies=5", "infer.direction_candidates=with_two_sided"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = evaluate_run(run, device="cpu", progress=False, report=False, infer=asked)
    said = _ours(caught)
    assert len(said) == 1 and "\n" not in said[0]
    assert all(item in said[0] for item in asked) and f"cavga redecide {run} NEW_DIR --set infer." in said[0]
    # the decisions stand: metrics.json records the settings they were made under, not the ones asked
    assert (result["infer"]["mask_fade"], result["infer"]["mask_copies"]) == (0.3, 2)
    assert result["infer"]["direction_candidates"] == "one_sided"


def test_predict_warns_of_a_decision_only_setting_and_validate_not_of_the_fade_its_sweep_reads(run):
    with pytest.warns(DecidedUnderOtherSettings, match=r"infer\.direction_fade=0\.5 acts only when"):
        Predictor.from_run(run, "cpu", ["infer.direction_fade=0.5", "infer.score_fade=auto"])  # auto: 1, as saved
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        faded = validate_run(run, device="cpu", copies=1, infer=["infer.mask_fade=0.6"])
    assert _ours(caught) == [] and faded["mask_fade"] == 0.6


def test_auto_asked_where_training_decided_nothing_is_warned_of(run):
    with pytest.warns(DecidedUnderOtherSettings, match="decided no mask_margin for this run, so auto reads as"):
        Predictor.from_run(run, "cpu", ["infer.mask_margin=auto"])


def test_the_grids_full_inference_section_warns_of_nothing_before_or_after_deciding_again(run):
    """A grid evaluates with its cell's whole infer section, after redecide_in_place made the decisions
    under it: equal to the run's own, it is no setting asked in vain."""
    _, cfg = saved_run(run)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        evaluate_run(run, device="cpu", progress=False, report=False, infer=infer_settings(cfg))
        cfg.infer.mask_fade, cfg.infer.mask_copies = 0.6, 3
        redecide_in_place(run, infer_settings(cfg), "cpu")
        result = evaluate_run(run, device="cpu", progress=False, report=False, infer=infer_settings(cfg))
    assert _ours(caught) == [] and (result["infer"]["mask_fade"], result["infer"]["mask_copies"]) == (0.6, 3)


def test_an_edited_config_yaml_infer_section_is_warned_of_and_the_checkpoints_is_used(run):
    plain = evaluate_run(run, device="cpu", progress=False, report=False)
    config = run / "config.yaml"
    config.write_text(config.read_text().replace("score_threshold: 0.5", "score_threshold: 0.99"))
    with pytest.warns(
        EditedRunConfig,
        match=r"config\.yaml: .* from the checkpoint's \(infer\.score_threshold\), which are the ones used",
    ):
        edited = evaluate_run(run, device="cpu", progress=False, report=False)
    assert edited["metrics"] == plain["metrics"]


# ------------------------------------------------ validate reads the run's settings from its checkpoint


def test_validate_reads_the_asked_mask_settings_from_the_checkpoint_not_config_yaml(run):
    config = run / "config.yaml"
    config.write_text(config.read_text().replace("mask_peak_fraction: auto", "mask_peak_fraction: bogus"))
    with pytest.warns(EditedRunConfig, match=r"infer\.mask_peak_fraction"):
        bogus = validate_run(run, device="cpu", copies=1)  # was a ValueError from mask_candidates
    config.unlink()
    gone = validate_run(run, device="cpu", copies=1)  # was a sweep at the decided values: 8 rows
    assert list(bogus["mask_quantile_iou"]) == list(gone["mask_quantile_iou"]) == list(mask_candidates(0.0, "auto"))


def test_validate_sweeps_at_the_mask_margin_set_and_records_a_fixed_threshold(run):
    result = validate_run(run, device="cpu", copies=1, infer=["infer.mask_margin=0.5"])
    assert list(result["mask_quantile_iou"]) == list(mask_candidates(0.5, "auto"))
    fixed = validate_run(run, device="cpu", copies=1, infer=["infer.mask_quantile=null"])
    assert fixed["mask_quantile"] is None and fixed["mask_threshold"] == 0.5  # the fixed infer.mask_threshold


def test_validate_holds_the_runs_lock_and_is_refused_while_another_holds_it(run, monkeypatch):
    with RunLock(run, "train"), pytest.raises(CavgaError, match=r"in use by .*cavga train"):
        validate_run(run, device="cpu", copies=1)
    held = []
    write = validation.atomic_write_json
    monkeypatch.setattr(
        validation, "atomic_write_json", lambda p, d: held.append((run / LOCK_FILE).read_text()) or write(p, d)
    )
    validate_run(run, device="cpu", copies=1)
    assert json.loads(held[0])["command"] == "cavga validate" and (run / VALIDATION_FILE).is_file()


def test_validate_loads_the_run_as_evaluate_does_before_reading_its_held_out_set(run, monkeypatch):
    """A run stopped in training's end is said by Predictor.from_run's check, as evaluate says it."""

    def stopped(*a, **k):
        raise CavgaError(f"{run}: training stopped at epoch 1; finish it with --resume")

    monkeypatch.setattr(Predictor, "from_run", stopped)
    monkeypatch.setattr(validation, "held_out_normals", lambda *a: pytest.fail("read the held-out set first"))
    with pytest.raises(CavgaError, match="finish it with --resume"):
        validate_run(run, device="cpu")


# ------------------------------------------------ negative seeds


def test_a_negative_seed_is_refused_at_parsing_before_anything_is_written(run, tmp_path, capsys):
    out = tmp_path / "demo"
    for argv in (
        ["validate", str(run), "--paint-seed", "-1"],
        ["demo", "--out", str(out), "--seed", "-1", "--epochs", "1", "--image-size", "32"],
        ["train", "--data", str(tmp_path), "--out", str(tmp_path / "t"), "--seed", "-1"],
    ):
        with pytest.raises(SystemExit) as stopped:
            main(argv)
        assert stopped.value.code == 2 and "give a seed of 0 or more" in capsys.readouterr().err
    assert not out.exists() and not (tmp_path / "t").exists() and not (run / VALIDATION_FILE).exists()


def test_a_negative_seed_is_refused_by_the_library_too(run, tmp_path):
    with pytest.raises(CavgaError, match="--paint-seed -1: give a seed of 0 or more"):
        validate_run(run, device="cpu", seed=-1)
    with pytest.raises(CavgaError, match="demo seed -1: give a seed of 0 or more"):
        generate_demo_dataset(tmp_path / "data", seed=-1)
    assert not (tmp_path / "data").exists()
