"""The one-line errors about configuration: where a YAML file is broken, the known sections for a
``--set``, a training config given as a grid file, and a demo rerun with other settings."""

import re

import pytest
import yaml

from cavga import grid as G
from cavga.cli import main
from cavga.config import RunConfig, apply_overrides, from_dict, load_config
from cavga.errors import CavgaError
from cavga.grid import run as grid_run

TINY = ["--epochs", "1", "--image-size", "32", "--batch-size", "16", "--device", "cpu", "--no-progress",
        "--set", "model.base_channels=8", "--set", "model.latent_channels=8"]  # fmt: skip


def _error_line(capsys) -> str:
    """The command's one error line (``cavga: error: ...``), checked to be its only line on stderr."""
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("cavga: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# --------------------------------------------------------------------------------- YAML syntax errors


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (  # a tab indent
            "data:\n  root: x\n\tlayout: mvtec\n",
            "not valid YAML at line 3, column 1: found character '\\t' that cannot start any token; "
            "indent with spaces, not tabs",
        ),
        (  # a flow mapping left open: where PyYAML noticed, and where the mapping began
            "data: {root: x, layout: mvtec\ntrain: {}\n",
            "not valid YAML at line 2, column 6: expected ',' or '}', but got ':' "
            "(while parsing a flow mapping at line 1, column 7)",
        ),
        (  # a control character: PyYAML gives its offset only
            "train:\n  epochs: 3\n  lr: \x01\n",
            "not valid YAML at line 3, column 7: unacceptable character #x0001: special characters are not allowed",
        ),
    ],
    ids=["tab", "flow-mapping", "control-character"],
)
def test_a_broken_yaml_file_is_named_with_its_line_column_and_problem(tmp_path, capsys, text, message):
    path = tmp_path / "broken.yaml"
    path.write_text(text)
    with pytest.raises(CavgaError) as e:
        load_config(path)
    assert str(e.value) == f"{path}: {message}"
    # the same on the command line, as one line, for a training config and for a grid file
    assert main(["train", "--config", str(path), "--data", str(tmp_path), "--out", str(tmp_path / "r")]) == 2
    assert _error_line(capsys) == f"cavga: error: {path}: {message}"
    assert main(["benchmark", "--grid", str(path), "--out", str(tmp_path / "g")]) == 2
    assert _error_line(capsys) == f"cavga: error: {path}: {message}"
    assert not (tmp_path / "r").exists() and not (tmp_path / "g").exists()


def test_a_broken_set_value_is_placed_by_its_column():
    with pytest.raises(CavgaError) as e:
        apply_overrides(RunConfig(), ["data.root={x"])
    assert str(e.value) == (
        "--set 'data.root={x': the value is not valid YAML at column 3: expected ',' or '}', but got "
        "'<stream end>' (while parsing a flow mapping at column 1)"
    )


# ------------------------------------------------------------------------------- unknown sections


def test_an_unknown_set_section_lists_the_known_ones_as_a_file_does():
    with pytest.raises(CavgaError) as by_set:
        apply_overrides(RunConfig(), ["foo.bar=1"])
    with pytest.raises(CavgaError) as by_file:
        from_dict({"foo": {"bar": 1}}, "x.yaml")
    assert str(by_set.value).startswith("unknown config section 'foo' in 'foo.bar' (known: data, model, loss, train")
    known = [re.search(r"\(known: ([^)]*)\)", str(e.value)).group(1) for e in (by_set, by_file)]
    assert known[0] == known[1]


# ------------------------------------------------------------------ a training config as a grid file


def test_a_training_config_given_as_a_grid_is_refused_before_anything_is_written(tmp_path, capsys):
    config = tmp_path / "good.yaml"
    config.write_text("model: {variant: Du}\ntrain: {epochs: 1}\ndata: {image_size: 32}\n")
    load_config(config)  # a sound training config
    out = tmp_path / "runs" / "g"
    assert main(["benchmark", "--grid", str(config), "--out", str(out), "--no-progress"]) == 2
    said = capsys.readouterr()
    assert said.out == ""  # no "training" line: nothing started
    errors = [ln for ln in said.err.splitlines() if ln.startswith("cavga: error:")]
    assert len(errors) == 1, said.err
    assert errors[0].startswith(f"cavga: error: {config}: not a grid file: only config sections (model, train, data)")
    assert errors[0].endswith("(a training config? give it to `cavga train --config`)")
    assert not (tmp_path / "runs").exists()
    # a grid that names its models, categories or seeds beside the sections is still a grid
    assert G.parse_grid({"data": {"layout": "digits"}, "seeds": [0]}, "g").seeds == (0,)


def test_a_grid_that_fails_before_writing_a_result_leaves_no_folder(tmp_path, monkeypatch):
    """Its first cell fails (here: no data): neither OUT nor OUT/.lock stays behind."""

    def no_data(*args, **kwargs):
        raise CavgaError("data.root is not set")

    monkeypatch.setattr(grid_run, "train", no_data)
    spec = G.parse_grid({"data": {"layout": "mvtec"}, "categories": ["bottle"], "models": ["Du"]}, "g")
    out = tmp_path / "runs" / "g"
    with pytest.raises(CavgaError, match="data.root is not set"):
        G.run_grid(spec, out, progress=False)
    assert not (tmp_path / "runs").exists()


# ----------------------------------------------------------------------- a demo rerun into one --out


def test_a_demo_rerun_with_other_settings_says_what_differs_and_what_to_do(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["demo", "--out", "demo", *TINY]) == 0
    config = (tmp_path / "demo" / "run" / "config.yaml").read_bytes()
    capsys.readouterr()

    assert main(["demo", "--out", "demo", *TINY, "--image-size", "64"]) == 2
    error = _error_line(capsys)
    assert error == (
        "cavga: error: demo/run: holds a demo run made with other settings (data.image_size=32, not 64); "
        "give another --out, or remove demo/run to start the demo afresh"
    )
    assert "resume" not in error
    assert (tmp_path / "demo" / "run" / "config.yaml").read_bytes() == config  # refused before writing

    # the same settings again (the --out spelt otherwise): the run there is reused, and the demo says so
    assert main(["demo", "--out", str(tmp_path / "demo"), *TINY]) == 0
    said = capsys.readouterr().out.splitlines()
    run = tmp_path / "demo" / "run"
    assert said[0] == f"{run}: reusing the finished demo run already there (1 epoch trained); evaluating it again"
    assert yaml.safe_load(config)["data"]["root"] == "demo/data"


# --------------------------------------------------------------------- values as written, named files


def test_a_list_as_a_key_is_one_line_naming_the_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("data: {[a]: 1}\n")
    with pytest.raises(CavgaError, match=r"c.yaml: not valid YAML at line 1, column 8: a key must be a plain value"):
        load_config(path)


def test_a_text_setting_takes_the_value_as_written(tmp_path):
    """YAML reads 007 as the number 7 and no as False; a category named so keeps its name."""
    assert apply_overrides(RunConfig(), ["data.category=007"]).data.category == "007"
    assert apply_overrides(RunConfig(), ["data.category='1e3'"]).data.category == "1e3"  # quoted: YAML's text
    path = tmp_path / "c.yaml"
    path.write_text("data: {category: no, layout: mvtec}\nmodel: {variant: Du}\n")
    assert load_config(path).data.category == "no"
    path.write_text("data: {category: 007}\ntrain: {epochs: 3}\n")
    cfg = load_config(path)
    assert cfg.data.category == "007" and cfg.train.epochs == 3  # a number setting still reads the number
    with pytest.raises(CavgaError, match=r"c.yaml: data.root: \['x'\] is not a valid str"):
        from_dict({"data": {"root": ["x"]}}, str(path))


def test_a_number_beyond_any_setting_is_refused_before_torch_sees_it():
    with pytest.raises(CavgaError, match=r"^model.latent_channels: '99999999999999999999' is too large$"):
        apply_overrides(RunConfig(), ["model.latent_channels=99999999999999999999"])


def test_a_range_error_from_a_config_file_names_the_file(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text("infer: {mask_quantile: -0.5}\n")
    assert main(["train", "--data", str(tmp_path), "--config", str(path), "--out", str(tmp_path / "r"), *TINY]) == 2
    assert re.search(r"c.yaml: infer.mask_quantile: -0.5 is outside", _error_line(capsys))
    assert not (tmp_path / "r").exists()
