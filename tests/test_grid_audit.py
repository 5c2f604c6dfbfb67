"""`cavga benchmark --grid` as an audit found it: what a cell is, its folder across data sets, the grid
file's checks, results.md while cells are missing, and Ctrl-C as the workers start."""

import functools
import json
import os
import signal
from pathlib import Path

import pytest
import yaml

from _errors import one_line_error
from cavga import grid as G
from cavga.cli import main
from cavga.config import save_config
from cavga.errors import CavgaError
from cavga.grid import run as grid_run
from cavga.grid import workers as grid_workers
from cavga.grid.spec import expand_env, parse_grid
from test_grid import _table

TINY = {"data": {"layout": "digits", "image_size": 32}, "model": {"base_channels": 8, "latent_channels": 8}}


def _write(tmp_path, raw: dict, name: str = "g.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(raw))
    return path


def test_a_command_line_setting_of_what_makes_a_cell_is_refused(tmp_path, capsys):
    """--set data.category=1 would train category 1 in every row, model.variant=Dw Dw under CAVGA-Du:
    every key the grid sets cell by cell is refused, naming the file and where it sets it."""
    noLae = {"name": "Du-noLae", "variant": "Du", "overrides": {"loss.w_ae": 0, "data.image_size": 64}}
    path = _write(tmp_path, {**TINY, "categories": [0, 1], "models": ["Du", noLae]})
    out = tmp_path / "out"
    for key, value, place in (
        ("data.category", 1, "categories"),
        ("model.variant", "Dw", "models"),
        ("train.seed", 3, "seeds"),
        ("data.seed", 3, "seeds"),
        ("data.root", "/tmp", "data"),
        ("data.layout", "mnist", "data"),
        ("loss.w_ae", 1, "model Du-noLae's overrides"),
    ):
        assert main(["benchmark", "--grid", str(path), "--out", str(out), "--set", f"{key}={value}"]) == 2
        one_line_error(capsys, f"--set {key}: cannot be combined with --grid {path}: the grid file sets it ({place})")
    # a flag setting such a key is named as typed
    assert main(["benchmark", "--grid", str(path), "--out", str(out), "--image-size", "128"]) == 2
    one_line_error(capsys, "--image-size (data.image_size): cannot be combined with --grid", "(model Du-noLae's")
    assert not out.exists()
    # what every cell shares still applies to every cell, epochs included (results.md says so)
    spec = G.load_grid(path)
    cells = G.build_cells(spec, out, {"train.epochs": 2}, ["infer.score_threshold=0.4", "model.base_channels=16"])
    assert {(c.cfg.train.epochs, c.cfg.infer.score_threshold, c.cfg.model.base_channels) for c in cells} == {
        (2, 0.4, 16)
    }
    assert [c.cfg.data.category for c in cells] == ["0", "0", "1", "1"]


def _finish(cell) -> None:
    """A finished cell as the grid leaves one: its config.yaml, and metrics.json stamped with its fingerprint."""
    cell.dir.mkdir(parents=True)
    save_config(cell.cfg, cell.dir / "config.yaml")
    stamp = {**cell.key(), "fingerprint": grid_run.cell_fingerprint(cell.cfg)}
    (cell.dir / "metrics.json").write_text(json.dumps({"metrics": {"image_auroc": 0.5}, "grid_cell": stamp}))


def _fake_run_cell(ran: list):
    def run(cell, progress):
        ran.append(cell.dir)
        return {"metrics": {"image_auroc": 0.75}}

    return run


def test_a_data_set_added_to_a_grid_keeps_its_finished_cells(tmp_path, monkeypatch):
    """OUT/Du/0/seed0 of a one-data-set grid is OUT/Du/digits-0/seed0 once a second data set is added:
    the finished cell moves there, is kept, and moves back when the data set is removed again; a run
    of other settings under the old name is left where it is."""
    out, ran = tmp_path / "out", []
    monkeypatch.setattr(grid_run, "run_cell", _fake_run_cell(ran))
    one = parse_grid({**TINY, "categories": [0], "models": ["Du"]}, "g")
    _finish(G.build_cells(one, out)[0])
    datasets = [{"name": "digits", "data": {"layout": "digits"}, "categories": [0]},
                {"name": "more", "data": {"layout": "digits"}, "categories": [1]}]  # fmt: skip
    two = parse_grid({"data": {"image_size": 32}, "model": TINY["model"], "datasets": datasets}, "g")
    with pytest.warns(UserWarning, match=r"Du/0/seed0: moved to .*Du/digits-0/seed0"):
        rows = G.run_grid(two, out, progress=False)
    assert ran == [out / "Du" / "more-1" / "seed0"]  # only the new data set's cell ran
    assert [r["metrics"]["image_auroc"] for r in rows] == [0.5, 0.75]
    assert not (out / "Du" / "0").exists() and (out / "Du" / "digits-0" / "seed0" / "metrics.json").is_file()

    ran.clear()
    with pytest.warns(UserWarning, match=r"Du/digits-0/seed0: moved to .*Du/0/seed0"):
        G.run_grid(one, out, progress=False)  # the second data set removed: back to Du/0
    assert ran == [] and (out / "Du" / "0" / "seed0" / "metrics.json").is_file()

    wide = parse_grid({"data": {"image_size": 32}, "model": {"base_channels": 16}, "datasets": datasets}, "g")
    G.run_grid(wide, out, progress=False)
    assert (out / "Du" / "digits-0" / "seed0") in ran and (out / "Du" / "0" / "seed0" / "metrics.json").is_file()


def test_a_model_name_used_twice_is_refused_unless_repeated_exactly(tmp_path, capsys):
    path = _write(tmp_path, {**TINY, "categories": [0], "models": ["Du", {"name": "Du", "variant": "Dw"}]})
    assert main(["benchmark", "--grid", str(path), "--out", str(tmp_path / "o")]) == 2
    one_line_error(capsys, f"{path}: models[1]: name 'Du' is already used")
    for same in (["Du", "Du"], ["Ru", "table8"], ["Du", {"name": "Du", "variant": "Du"}]):
        names = [m.name for m in parse_grid({**TINY, "categories": [0], "models": same}, "g").models]
        assert len(names) == len(set(names)) and names[0] == same[0]


@pytest.mark.parametrize(
    "change, said",
    [
        ({"models": [{"name": "X", "variant": "Du", "overrides": {"loss.w_aee": 0}}]},
         "models[0].overrides: unknown config key 'loss.w_aee'"),
        ({"models": [{"name": "X", "variant": "Du", "overrides": {"loss.w_ae": "abc"}}]},
         "models[0].overrides: loss.w_ae: 'abc' is not a valid float"),
        ({"models": [{"name": "X", "variant": "Du", "overrides": {"loss": {"w_ae": {"a": 1}}}}]},
         "models[0].overrides: loss.w_ae:"),
        ({"data": {"layout": "mvtec", "root": "${NOPE_VAR_AUDIT}/mv"}, "categories": ["bottle"]},
         ": data.root: environment variable NOPE_VAR_AUDIT is not set"),
        ({"metrics": "iou"}, "metrics: expected a non-empty list of metric names"),
        ({"metrics": []}, "metrics: expected a non-empty list of metric names"),
        ({"name": ["a", "b"]}, ": name: expected a string, got list"),
        ({"models": [{"name": "X", "variant": "Du", "paper": ["CAVGA-Duu"]}]},
         "models[0].paper: unknown paper column 'CAVGA-Duu'"),
        ({"categories": None, "datasets": [{"name": ["d"], "data": {"layout": "digits"}, "categories": [0]}]},
         "datasets[0].name: expected a string, got list"),
    ],
)  # fmt: skip
def test_a_grid_files_problem_is_one_line_naming_the_file_and_the_key(tmp_path, capsys, monkeypatch, change, said):
    monkeypatch.delenv("NOPE_VAR_AUDIT", raising=False)
    raw = {**TINY, "categories": [0], "models": ["Du"], **change}
    raw = {k: v for k, v in raw.items() if v is not None}
    path = _write(tmp_path, raw)
    assert main(["benchmark", "--grid", str(path), "--out", str(tmp_path / "o")]) == 2
    one_line_error(capsys, str(path), said)
    assert not (tmp_path / "o").exists()


def test_an_empty_variable_takes_its_default_as_in_a_shell(monkeypatch):
    monkeypatch.setenv("CAVGA_AUDIT_EMPTY", "")
    assert expand_env("${CAVGA_AUDIT_EMPTY:-/data}/mv") == "/data/mv"
    assert expand_env("${CAVGA_AUDIT_EMPTY}/mv") == "/mv"  # set, no default: its (empty) value
    monkeypatch.setenv("CAVGA_AUDIT_EMPTY", "/x")
    assert expand_env("${CAVGA_AUDIT_EMPTY:-/data}/mv") == "/x/mv"


def test_a_cell_over_fewer_seeds_than_the_grids_says_so():
    spec = parse_grid({**TINY, "categories": [0, 1], "seeds": [0, 1, 2], "models": ["Du"]}, "g")
    values = {("0", 0): 0.5, ("0", 1): 0.6, ("0", 2): 0.7, ("1", 0): 0.8, ("1", 1): 0.9}
    rows = [{"model": "Du", "dataset": "digits", "category": c, "seed": s, "metrics": {"image_auroc": v}}
            for (c, s), v in values.items()]  # fmt: skip
    t = _table(G.markdown_report(spec, rows, 6), "## digits: image AUROC")
    assert t[("0", "CAVGA-Du")] == "0.600 ± 0.100"  # all three seeds
    assert t[("1", "CAVGA-Du")] == "0.850 ± 0.071 (2 of 3 seeds)"
    assert t[("mean", "CAVGA-Du")] == "0.700 ± 0.071 (2 of 3 seeds)"  # seeds 0 and 1, which have both rows
    one = _table(G.markdown_report(spec, rows[:1], 6), "## digits: image AUROC")
    assert one[("0", "CAVGA-Du")] == "0.500 (1 of 3 seeds)" and one[("1", "CAVGA-Du")] == "–"


def test_results_md_of_an_edited_grid_drops_the_old_numbers_before_a_cell_trains(tmp_path, monkeypatch):
    """The grid file edited in place (epochs 1 -> 60) and the rerun stopped in its first cell: results.md
    no longer shows the 1-epoch numbers as this grid's."""
    raw = {**TINY, "train": {"epochs": 1}, "categories": [0, 1], "models": ["Du"]}
    path, out = _write(tmp_path, raw), tmp_path / "out"
    monkeypatch.setattr(grid_run, "run_cell", _fake_run_cell([]))
    G.run_grid(G.load_grid(path), out, progress=False)
    assert "2 of 2 cells finished; trained 1 epoch" in (out / "results.md").read_text()

    path.write_text(yaml.safe_dump({**raw, "train": {"epochs": 60}}))

    def stopped(cell, progress):
        raise KeyboardInterrupt

    monkeypatch.setattr(grid_run, "run_cell", stopped)
    with pytest.raises(KeyboardInterrupt):
        G.run_grid(G.load_grid(path), out, progress=False)
    md = (out / "results.md").read_text()
    assert "0 of 2 cells finished" in md and "0.750" not in md and "1 epoch" not in md
    assert json.loads((out / "results.json").read_text())["cells"] == []


def _init_and_report(folder: str, threads: int, stop) -> None:
    """A worker's ``_worker_init``, writing whether SIGINT was blocked before it and after it."""

    def blocked() -> str:
        return "blocked" if signal.SIGINT in signal.pthread_sigmask(signal.SIG_BLOCK, set()) else "open"

    before = blocked()
    grid_workers._worker_init(threads, stop)
    ignored = signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    Path(folder, f"init-{os.getpid()}").write_text(f"{before} {blocked()} {ignored}")


@pytest.mark.skipif(not hasattr(signal, "pthread_sigmask"), reason="POSIX signal masks")
def test_workers_start_with_sigint_blocked_until_they_ignore_it(tmp_path, monkeypatch):
    """A Ctrl-C while the --jobs workers import would print a traceback from each: they are spawned with
    SIGINT blocked, and unblock it once ignoring it; this process's mask is as it was after the grid."""
    monkeypatch.setattr(grid_workers, "_worker_init", functools.partial(_init_and_report, str(tmp_path)))
    spec = parse_grid({**TINY, "categories": [0, 1], "models": ["Du"]}, "g")
    # cells whose training refuses their settings at once: the workers start, and no cell trains
    cells = G.build_cells(spec, tmp_path / "out", sets=["data.image_size=33"], validate=False)
    with pytest.raises(CavgaError, match="image_size"):
        grid_workers.run_in_workers(cells, [0, 1], 2, lambda cell, status: None, lambda i, result: None)
    reports = [p.read_text() for p in tmp_path.glob("init-*")]
    assert reports and set(reports) == {"blocked open True"}, reports
    assert signal.SIGINT not in signal.pthread_sigmask(signal.SIG_BLOCK, set())


def test_a_cell_stopped_after_its_metrics_is_adopted_with_its_page_or_evaluated_again(tmp_path):
    """Stopped after evaluate wrote metrics.json, before its page and the grid's stamp: adopted with its
    report page written from its scores; stopped before its scores.json too: evaluated again."""
    raw = {**TINY, "model": {**TINY["model"], "encoder_init": "dcgan"}, "categories": [0], "models": ["Du"]}
    spec = parse_grid({**raw, "train": {"epochs": 1, "batch_size": 16, "device": "cpu"}}, "g")
    cell = G.build_cells(spec, tmp_path / "out")[0]
    grid_run.train(cell.cfg, cell.dir, progress=False)
    grid_run.evaluate_run(cell.dir, device="cpu", progress=False, report=False)  # as a cell stopped after it
    (cell.dir / "scores.json").rename(tmp_path / "scores.json")
    assert G.finished(cell) is None and not (cell.dir / "report").exists()  # no scores: not a finished evaluation
    (tmp_path / "scores.json").rename(cell.dir / "scores.json")
    result = G.finished(cell)
    assert result is not None and result["grid_cell"]["adopted"]
    assert (cell.dir / "report" / "index.html").is_file()


def test_a_negative_seed_is_refused_as_every_seed_flag_refuses_it(tmp_path, capsys):
    """Python's random (the data split) reads -1 as 1: seed -1 would silently share seed 1's split."""
    path = _write(tmp_path, {**TINY, "name": "g", "models": ["Du"], "categories": [0]})
    assert main(["benchmark", "--grid", str(path), "--seeds", "0,-1", "--out", str(tmp_path / "b")]) == 2
    assert "--seeds '0,-1': give seeds of 0 or more" in capsys.readouterr().err and not (tmp_path / "b").exists()
