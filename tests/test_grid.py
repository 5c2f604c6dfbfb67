"""`cavga benchmark --grid`: the grid file, resuming without recomputing, and the paper-style tables."""

import copy
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from cavga import grid as G
from cavga.cli import main
from cavga.config import MODELS, RunConfig, to_dict
from cavga.demo_data import generate_demo_dataset
from cavga.errors import CavgaError
from cavga.grid import report as grid_report
from cavga.grid import run as grid_run
from cavga.grid import workers as grid_workers
from cavga.paper_numbers import TABLES
from oneclass_data import fake_mnist

ROOT = Path(__file__).resolve().parents[1]
PAPER = Path("/work/shared/paper/cavga-eccv2020.txt")


def _grid_file(tmp_path, data_root, **extra) -> Path:
    grid = {
        "name": "tiny",
        "data": {"root": str(data_root), "layout": "mnist", "image_size": 32},
        "model": {"base_channels": 8, "latent_channels": 8},
        "train": {"epochs": 1, "batch_size": 4, "device": "cpu"},
        "categories": [0, 1],
        "seeds": [0],
        "models": ["Du", {"name": "Du-noLae", "variant": "Du", "overrides": {"loss.w_ae": 0}}],
        **extra,
    }
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(grid))
    return path


class Spy:
    """Counts calls of a function and can stop the grid at the n-th (KeyboardInterrupt, as Ctrl-C)."""

    def __init__(self, fn, stop_at=None):
        self.fn, self.stop_at, self.calls = fn, stop_at, []

    def __call__(self, *args, **kwargs):
        self.calls.append((args, kwargs))
        if self.stop_at is not None and len(self.calls) == self.stop_at:
            raise KeyboardInterrupt
        return self.fn(*args, **kwargs)


def test_grid_resumes_without_recomputing_finished_cells(tmp_path, monkeypatch):
    fake_mnist(tmp_path / "data", n_train=40, n_test=20)
    grid = G.load_grid(_grid_file(tmp_path, tmp_path / "data"))
    out = tmp_path / "out"
    # first run: cell 3 trains, then is stopped before its evaluation (a checkpoint, no metrics)
    train_spy, eval_spy = Spy(grid_run.train), Spy(grid_run.evaluate_run, stop_at=3)
    monkeypatch.setattr(grid_run, "train", train_spy)
    monkeypatch.setattr(grid_run, "evaluate_run", eval_spy)
    with pytest.raises(KeyboardInterrupt):
        G.run_grid(grid, out, progress=False)
    assert len(train_spy.calls) == 3
    done = json.loads((out / "results.json").read_text())["cells"]
    assert [(c["model"], c["category"]) for c in done] == [("Du", "0"), ("Du-noLae", "0")]
    third = out / "Du" / "1" / "seed0"
    assert (third / "checkpoint.pt").exists() and not (third / "metrics.json").exists()

    # second run: only cells 3 (resumed from its checkpoint) and 4 train; 1 and 2 are kept
    train_spy, eval_spy = Spy(grid_run.train), Spy(grid_run.evaluate_run)
    monkeypatch.setattr(grid_run, "train", train_spy)
    monkeypatch.setattr(grid_run, "evaluate_run", eval_spy)
    rows = G.run_grid(grid, out, progress=False)
    assert [Path(a[1]) for a, _ in train_spy.calls] == [third, out / "Du-noLae" / "1" / "seed0"]
    assert [k["resume"] for _, k in train_spy.calls] == [True, False]
    assert len(eval_spy.calls) == 2 and len(rows) == 4
    assert len((out / "results.csv").read_text().splitlines()) == 5  # header + 4 cells

    # a third run recomputes nothing and tables the four kept cells once; a changed setting
    # (inference) makes every cell stale
    train_spy, write_spy = Spy(grid_run.train), Spy(grid_report.write_results)
    monkeypatch.setattr(grid_run, "train", train_spy)
    monkeypatch.setattr(grid_report, "write_results", write_spy)
    G.run_grid(grid, out, progress=False)
    assert train_spy.calls == [] and len(write_spy.calls) == 1
    G.run_grid(grid, out, sets=["infer.score_threshold=0.4"], progress=False)
    assert len(train_spy.calls) == 4 and all(k["resume"] for _, k in train_spy.calls)
    # ... and is evaluated again with it, without retraining (an inference setting needs none)
    for cell in G.build_cells(grid, out):
        metrics = json.loads((cell.dir / "metrics.json").read_text())
        assert metrics["thresholds"]["score"] == 0.4 and metrics["split"]  # evaluated anew, at 0.4
        assert len((cell.dir / "history.jsonl").read_text().splitlines()) == 1  # still its one epoch


def _table(md: str, heading: str) -> dict[tuple[str, str], str]:
    """The markdown table under ``heading`` as {(row, column): cell}."""
    lines = md.split(heading, 1)[1].splitlines()
    lines = lines[next(i for i, ln in enumerate(lines) if ln.startswith("|")) :]
    head = [c.strip() for c in lines[0].strip("|").split("|")]
    out = {}
    for line in lines[2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        out.update({(cells[0], h): c for h, c in zip(head[1:], cells[1:], strict=True)})
    return out


def _rows(dataset, values: dict) -> list[dict]:
    """Hand-built cell rows: {(model, category, seed): {metric: value}}."""
    return [{"model": m, "dataset": dataset, "category": c, "seed": s, "metrics": v} for (m, c, s), v in values.items()]


def test_markdown_puts_each_paper_number_in_its_row_and_column():
    spec = G.parse_grid({"data": {"layout": "mvtec"}, "categories": ["bottle", "hazelnut"], "seeds": [0, 1],
                         "models": ["Du", "Ru", "AE-L2", "c1", {"name": "mine", "variant": "Du",
                                                                   "overrides": {"loss.w_ae": 1}}],
                         "metrics": ["iou", "detection_accuracy"]}, "hand")  # fmt: skip
    vals = {}
    for i, m in enumerate(["Du", "Ru", "AE-L2", "Ru-flat-noLae", "mine"]):
        for j, c in enumerate(["bottle", "hazelnut"]):
            for s in (0, 1):
                vals[(m, c, s)] = {"iou": 0.1 * i + 0.01 * j + 0.002 * s, "detection_accuracy": 0.5 + 0.1 * j}
    md = G.markdown_report(spec, _rows("mvtec", vals))
    t3 = _table(md, "## mvtec: IoU — Table 3")
    assert t3[("bottle", "CAVGA-Du")] == "0.00 ± 0.00 (paper 0.30)"
    assert t3[("hazelnut", "CAVGA-Ru")] == "0.11 ± 0.00 (paper 0.51)"
    assert t3[("bottle", "AE-L2")] == "0.20 ± 0.00 (paper 0.22)"
    assert list(dict.fromkeys(c for _, c in t3)) == ["AE-L2", "CAVGA-Du", "CAVGA-Ru"]  # the paper's order
    mean_row = "mean (ours: 2; paper: 15)"
    # per seed: Ru's mean over the two categories is 0.105 + 0.002 s; over seeds 0.106 ± 0.0014
    assert t3[(mean_row, "CAVGA-Ru")] == "0.11 ± 0.00 (paper 0.47)"
    t8 = _table(md, "## mvtec: IoU — Table 8")
    assert t8[("bottle", "CAVGA-R*u")] == "0.30 ± 0.00 (paper 0.24)"  # c1
    assert t8[("bottle", "CAVGA-Ru")] == "0.10 ± 0.00 (paper 0.33)"  # Ru answers for c4 here
    assert t8[("mean (ours: 2; paper: 15)", "CAVGA-R*u")].endswith("(paper 0.24)")
    other = _table(md, "## mvtec: IoU (no paper numbers)")
    assert other[("bottle", "mine")] == "0.40 ± 0.00"
    t6 = _table(md, "## mvtec: detection accuracy — Table 6")
    assert t6[("hazelnut", "CAVGA-Du")] == "0.60 ± 0.00 (paper 0.84)"
    assert t6[("bottle", "AE-L2")] == "0.50 ± 0.00 (paper 0.80)"

    one = G.parse_grid({"datasets": [{"name": "mnist", "data": {"layout": "mnist"}, "categories": [3, 9]},
                                     {"name": "c10", "data": {"layout": "cifar10"}, "categories": ["cat"]}],
                        "models": ["Du"]}, "hand")  # fmt: skip
    rows = _rows("mnist", {("Du", "3", 0): {"image_auroc": 0.9}, ("Du", "9", 0): {"image_auroc": 0.8}})
    rows += _rows("c10", {("Du", "cat", 0): {"image_auroc": 0.7}})
    md = G.markdown_report(one, rows)
    t7 = _table(md, "## mnist: image AUROC — Table 7")
    assert t7[("3", "CAVGA-Du")] == "0.900 (paper 0.983)" and t7[("9", "CAVGA-Du")] == "0.800 (paper 0.991)"
    assert t7[("mean (ours: 2; paper: 10)", "CAVGA-Du")] == "0.850 (paper 0.986)"
    assert _table(md, "## c10: image AUROC — Table 7")[("cat", "CAVGA-Du")] == "0.700 (paper 0.747)"


def test_seeds_on_the_command_line_replace_the_grid_files(tmp_path, monkeypatch, capsys):
    path = tmp_path / "g.yaml"
    path.write_text(yaml.safe_dump({"data": {"layout": "digits"}, "categories": [0], "models": ["Du"], "seeds": [0]}))
    asked = []
    monkeypatch.setattr(G, "run_grid", lambda spec, out, *a, **k: asked.append(spec) or [])
    assert main(["benchmark", "--grid", str(path), "--out", str(tmp_path / "o"), "--seeds", "3,1"]) == 0
    assert asked[0].seeds == (3, 1)
    assert [c.seed for c in G.build_cells(asked[0], tmp_path / "o")] == [3, 1]
    for bad, words in ((["--seeds", "1,x"], "expected comma-separated integers"), (["--seeds", "1,1"], "repeated")):
        assert main(["benchmark", "--grid", str(path), "--out", str(tmp_path / "o"), *bad]) == 2
        assert words in capsys.readouterr().err
    assert main(["benchmark", "--layout", "digits", "--out", str(tmp_path / "b"), "--seeds", "1"]) == 2
    assert "--seeds is for --grid" in capsys.readouterr().err


def test_progress_lines_name_the_data_set(tmp_path):
    """digits 0 and mnist 0 are two cells: their progress lines say which data set each is."""
    spec = G.parse_grid({"datasets": [{"name": "digits", "data": {"layout": "digits"}, "categories": [0]},
                                      {"name": "mnist", "data": {"layout": "mnist", "root": str(tmp_path)},
                                       "categories": [0]}], "models": ["Du"]}, "g")  # fmt: skip
    lines = [G.progress_line(c, "run") for c in G.build_cells(spec, tmp_path / "o")]
    assert lines == ["digits: Du / 0 / seed 0: training", "mnist: Du / 0 / seed 0: training"]
    one = G.parse_grid({"data": {"layout": "digits"}, "categories": [0]}, "g")  # one data set: named by its layout
    line = G.progress_line(G.build_cells(one, tmp_path / "o")[0], "done")
    assert line == "digits: Du / 0 / seed 0: finished before, kept"


def test_results_md_states_the_epochs_the_cells_ran(tmp_path, monkeypatch):
    """--epochs (or --set train.epochs) over the grid file's: results.md says what the cells ran with."""
    path = tmp_path / "g.yaml"
    path.write_text(yaml.safe_dump({"name": "digits, 10 epochs", "data": {"layout": "digits"}, "categories": [0],
                                    "train": {"epochs": 10}, "models": ["Du"]}))  # fmt: skip
    monkeypatch.setattr(grid_run, "run_cell", lambda cell, progress: {"metrics": {"image_auroc": 0.9}})
    spec = G.load_grid(path)
    G.run_grid(spec, tmp_path / "a", {"train.epochs": 2}, progress=False)
    head = (tmp_path / "a" / "results.md").read_text().splitlines()[2]
    assert "; trained 2 epochs (set on the command line; the grid file gives 10 epochs);" in head
    assert json.loads((tmp_path / "a" / "results.json").read_text())["cells"][0]["epochs"] == 2
    G.run_grid(spec, tmp_path / "b", sets=["train.epochs=3"], progress=False)
    assert "; trained 3 epochs (set on the command line" in (tmp_path / "b" / "results.md").read_text()
    G.run_grid(spec, tmp_path / "c", progress=False)
    assert "; trained 10 epochs;" in (tmp_path / "c" / "results.md").read_text().splitlines()[2]


def test_grid_file_errors_are_one_line(tmp_path, capsys):
    base = {"data": {"layout": "digits"}, "categories": [0], "models": ["Du"]}
    for bad, words in (
        ({**base, "epochs": 3}, "unknown key 'epochs'"),
        ({**base, "data": {"layout": "digits", "colour": 1}}, "unknown key data.colour"),
        ({"datasets": [{"data": {"layout": "digits", "colour": 1}}]}, "datasets[0]: unknown config key 'data.colour'"),
        ({**base, "models": [{"name": "x", "variant": "Du", "lr": 1}]}, "models[0]: unknown key 'lr'"),
        ({"datasets": [{"name": "a", "rows": [1]}]}, "datasets[0]: unknown key 'rows'"),
        ({**base, "train": {"epoch": 3}}, "unknown key train.epoch"),
        ({**base, "seeds": "0"}, "seeds must be a non-empty list"),
        ({**base, "categories": [11]}, "is not a class of digits"),
        ({**base, "models": ["Xu"]}, "model Xu: model.variant: unknown model 'Xu'"),
    ):
        path = tmp_path / "bad.yaml"
        path.write_text(yaml.safe_dump(bad))
        assert main(["benchmark", "--grid", str(path), "--out", str(tmp_path / "o"), "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and str(path) in err and words in err, (words, err)
    assert not (tmp_path / "o" / "Xu").exists()
    path.write_text(yaml.safe_dump(base))
    assert main(["benchmark", "--grid", str(path), "--out", str(tmp_path / "o"), "--data", "x"]) == 2
    assert "--data cannot be combined with --grid" in capsys.readouterr().err


def test_ablation_models_are_table8_columns():
    spec = G.parse_grid({"data": {"layout": "mvtec"}, "categories": ["bottle"], "models": ["table8", "c4", "Du"]}, "g")
    assert [m.paper[-1] for m in spec.models] == ["c1", "c2", "c3", "c4", "c5", "c6", "c7", "c8", "CAVGA-Du"]
    cells = {c.model.paper[-1]: c.cfg for c in G.build_cells(spec, "out")}
    want = {  # column: (variant, flattened z, w_ae > 0, w_cga > 0)
        "c1": ("Ru", True, False, True), "c2": ("Ru", True, True, True), "c3": ("Ru", False, False, True),
        "c4": ("Ru", False, True, True), "c5": ("Rw", True, True, False), "c6": ("Rw", True, True, True),
        "c7": ("Rw", False, True, False), "c8": ("Rw", False, True, True),
    }  # fmt: skip
    for col, (variant, flat, ae, cga) in want.items():
        c = cells[col]
        assert (c.model.variant, c.model.flat_latent, c.loss.w_ae > 0, c.loss.w_cga > 0) == (variant, flat, ae, cga)
    assert len(cells) == 9  # c4 is Ru: listed twice, trained once


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_grids_parse(path):
    spec = G.load_grid(path)
    assert G.build_cells(spec, "out")  # every cell's configuration is valid (build_cells validates each)
    assert {m.variant for m in spec.models} <= set(MODELS)


@pytest.mark.skipif(not PAPER.is_file(), reason="the paper's text is not here")
def test_paper_numbers_are_the_papers_rows():
    text = " ".join(PAPER.read_text(encoding="utf-8").split())
    for t in TABLES:
        for row, values in t.rows.items():
            line = " ".join("-" if v is None else f"{v:.{t.decimals}f}" for v in values)
            assert line in text, (t.table, t.dataset, row, line)
    with pytest.raises(CavgaError):
        G.parse_grid({"data": {"layout": "mvtec"}, "paper": "x"}, "g")
    assert np.isclose(next(t for t in TABLES if t.table == "Table 3").value("bottle", "CAVGA-Du"), 0.30)


def test_a_cell_trained_longer_than_the_grid_asks_is_refused(tmp_path):
    spec = G.parse_grid({"data": {"layout": "digits"}, "categories": [0], "train": {"epochs": 2}}, "g")
    cell = G.build_cells(spec, tmp_path)[0]
    cell.dir.mkdir(parents=True)
    (cell.dir / "checkpoint.pt").write_bytes(b"")
    (cell.dir / "history.jsonl").write_text('{"epoch": 1}\n{"epoch": 2}\n{"epoch": 3}\n')
    with pytest.raises(CavgaError, match="trained for 3 epochs but the grid asks for 2"):
        G.run_cell(cell, progress=False)


def test_a_run_trained_outside_the_grid_with_the_cells_config_is_adopted(tmp_path):
    fake_mnist(tmp_path / "data", n_train=20, n_test=10)
    spec = G.load_grid(_grid_file(tmp_path, tmp_path / "data", models=["Du"], categories=[0]))
    cell = G.build_cells(spec, tmp_path / "out")[0]
    grid_run.train(cell.cfg, cell.dir, progress=False)  # as `cavga train` + `cavga evaluate` would
    grid_run.evaluate_run(cell.dir, device="cpu", progress=False, report=False)
    other = G.build_cells(spec, tmp_path / "out", sets=["train.epochs=2"])[0]
    assert G.finished(other) is None  # the saved config is not this cell's
    grid_run.evaluate_run(cell.dir, device="cpu", progress=False, report=False, infer=["infer.score_threshold=0.9"])
    assert G.finished(cell) is None  # its metrics.json was evaluated under other inference settings
    grid_run.evaluate_run(cell.dir, device="cpu", progress=False, report=False)
    metrics = cell.dir / "metrics.json"
    os.utime(metrics, (1, 1))  # evaluated before its last training: not adopted
    assert G.finished(cell) is None
    os.utime(metrics)
    result = G.finished(cell)
    assert result is not None and result["grid_cell"]["adopted"]
    stamped = json.loads((cell.dir / "metrics.json").read_text())
    assert stamped["grid_cell"]["fingerprint"] == grid_run.cell_fingerprint(cell.cfg)


def test_a_run_trained_with_its_data_named_relatively_is_adopted_and_resumed_as_it_was(tmp_path, monkeypatch):
    """`cavga train --data data` (relative) into a cell's folder: the grid, whose roots are absolute,
    adopts it once evaluated; resumed by the grid before that, the run keeps its own spelling of the
    root, so config.yaml still matches its checkpoint and the run stays usable."""
    fake_mnist(tmp_path / "data", n_train=20, n_test=10)
    spec = G.load_grid(_grid_file(tmp_path, tmp_path / "data", models=["Du"], categories=[0]))
    cell = G.build_cells(spec, tmp_path / "out")[0]
    monkeypatch.chdir(tmp_path)
    relative = copy.deepcopy(cell.cfg)
    relative.data.root = "data"
    grid_run.train(relative, cell.dir, progress=False)  # as `cavga train --data data ...`

    result = G.run_cell(cell, progress=False)  # not evaluated yet, so not adopted: the grid resumes it
    assert yaml.safe_load((cell.dir / "config.yaml").read_text())["data"]["root"] == "data"
    assert result["grid_cell"]["resumed"] and G.finished(cell) is not None
    assert main(["evaluate", str(cell.dir), "--device", "cpu", "--no-progress"]) == 0  # still one run

    metrics = json.loads((cell.dir / "metrics.json").read_text())
    assert "grid_cell" not in metrics  # evaluated outside the grid, as a user would
    adopted = G.finished(cell)
    assert adopted is not None and adopted["grid_cell"]["adopted"]


def test_grid_page_puts_the_papers_number_beside_each_cell():
    spec = G.parse_grid({"data": {"layout": "mvtec"}, "categories": ["bottle"], "models": ["Du", "AE-L2"],
                         "metrics": ["iou"]}, "hand")  # fmt: skip
    rows = [{**r, "label": r["model"], "run": f"/runs/{r['model']}"} for r in
            _rows("mvtec", {("Du", "bottle", 0): {"iou": 0.2}, ("AE-L2", "bottle", 0): {"iou": 0.1}})]  # fmt: skip
    page, paper = grid_report._page_rows(spec, rows)
    assert [p["model"] for p in page] == ["Du · mvtec bottle · seed 0", "AE-L2 · mvtec bottle · seed 0"]
    assert paper == {"Du · mvtec bottle · seed 0": {"iou": 0.30}, "AE-L2 · mvtec bottle · seed 0": {"iou": 0.22}}


def test_grid_runs_cells_in_parallel_workers_and_keeps_its_order(tmp_path, monkeypatch):
    """--jobs 2: every cell trained and evaluated in a spawned worker, rows in the grid's order,
    fingerprints stamped, so a serial rerun recomputes nothing."""
    fake_mnist(tmp_path / "data", n_train=40, n_test=20)
    path = _grid_file(tmp_path, tmp_path / "data")
    out = tmp_path / "out"
    seen: list[tuple[str, str]] = []
    grid = G.load_grid(path)
    rows = G.run_grid(grid, out, progress=False, on_cell=lambda c, s: seen.append((c.dir.name, s)), jobs=2)
    assert [(r["model"], r["category"]) for r in rows] == [
        ("Du", "0"),
        ("Du-noLae", "0"),
        ("Du", "1"),
        ("Du-noLae", "1"),
    ]
    assert [s for _, s in seen].count("queued") == 4 and [s for _, s in seen].count("finished") == 4
    done = json.loads((out / "results.json").read_text())["cells"]
    assert [(c["model"], c["category"]) for c in done] == [(r["model"], r["category"]) for r in rows]
    for cell in G.build_cells(grid, out):
        assert G.finished(cell) is not None, cell.dir  # metrics.json with the cell's fingerprint
    train_spy = Spy(grid_run.train)
    monkeypatch.setattr(grid_run, "train", train_spy)
    assert len(G.run_grid(grid, out, progress=False)) == 4 and train_spy.calls == []
    with pytest.raises(CavgaError, match="--jobs 0"):
        G.run_grid(grid, out, progress=False, jobs=0)
    args = [
        "benchmark",
        "--data",
        str(tmp_path / "data"),
        "--layout",
        "mnist",
        "--out",
        str(tmp_path / "b"),
        "--jobs",
        "2",
    ]
    assert main(args) == 2  # --jobs is for a grid's cells


def _children(pid: int) -> list[int]:
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the process table from /proc")
def test_workers_stop_when_the_grid_process_is_killed(tmp_path):
    """kill -9 of the grid process (a scheduler, a closed terminal): its spawned workers notice
    within seconds and stop, instead of training on, orphaned, beside the next grid."""
    import signal
    import subprocess
    import sys
    import time

    fake_mnist(tmp_path / "data", n_train=40, n_test=20)
    path = _grid_file(tmp_path, tmp_path / "data", train={"epochs": 100000, "batch_size": 4, "device": "cpu"})
    code = (
        "import sys; from cavga import grid as G; "
        "G.run_grid(G.load_grid(sys.argv[1]), sys.argv[2], progress=False, jobs=2)"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    grid = subprocess.Popen([sys.executable, "-c", code, str(path), str(tmp_path / "out")], env=env)
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 600  # a bound, not a wait: a loaded machine took over 120 s here
        while time.monotonic() < deadline:  # both workers spawned and training (checkpoint of epoch 1)
            workers = [p for p in _children(grid.pid) if p != grid.pid]
            if len(workers) >= 2 and len(list((tmp_path / "out").glob("*/*/seed0/checkpoint.pt"))) >= 2:
                break
            time.sleep(0.5)
        assert len(workers) >= 2, "the grid did not start its workers"
        grid.send_signal(signal.SIGKILL)
        grid.wait()
        deadline = time.monotonic() + 60
        while any(_alive(p) for p in workers) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not any(_alive(p) for p in workers), "workers trained on after the grid was killed"
    finally:
        for p in [grid.pid, *workers]:
            try:
                os.kill(p, signal.SIGKILL)
            except OSError:
                pass


def test_a_key_added_since_a_cell_ran_does_not_unfinish_it(monkeypatch):
    """A cell's fingerprint at a new key's "as before" value is the one the code before the key
    gave it; another value of the key changes it."""
    cfg = RunConfig()
    now = grid_run.cell_fingerprint(cfg)

    def without_key(c):  # to_dict as it was before session 31 added infer.mask_margin
        d = to_dict(c)
        del d["infer"]["mask_margin"]
        return d

    with monkeypatch.context() as m:
        m.setattr(grid_run, "to_dict", without_key)
        before = grid_run.cell_fingerprint(cfg)
    assert now == before
    cfg.infer.mask_margin = 0.05
    assert grid_run.cell_fingerprint(cfg) != before


def test_a_rerun_with_another_inference_setting_decides_the_cell_again_as_a_fresh_one(tmp_path):
    """A finished cell rerun with --set infer.mask_quantile=auto (trained at 0.99) is decided again on its
    held-out normals, in place, without training: its numbers are those of the same cell run with auto
    from the start (same seed, same weights)."""
    generate_demo_dataset(tmp_path / "data", seed=0, n_train=12, n_test_good=3, n_test_defect=5, crop=48)
    data = {"root": str(tmp_path / "data"), "layout": "mvtec", "image_size": 32, "val_fraction": 0.3}
    spec = G.load_grid(_grid_file(tmp_path, tmp_path / "data", models=["Du"], categories=["brick"], data=data))
    G.run_grid(spec, tmp_path / "a", sets=["infer.mask_quantile=0.99"], progress=False)
    G.run_grid(spec, tmp_path / "a", sets=["infer.mask_quantile=auto"], progress=False)
    G.run_grid(spec, tmp_path / "b", sets=["infer.mask_quantile=auto"], progress=False)
    (a,), (b,) = (G.build_cells(spec, tmp_path / r) for r in ("a", "b"))
    ma, mb = (json.loads((c.dir / "metrics.json").read_text()) for c in (a, b))
    decided = torch.load(a.dir / "checkpoint.pt", weights_only=True)["mask_quantile"]
    assert "held-out normals" in decided["protocol"]  # decided on painted held-out defects, as b's
    assert ma["thresholds"] == mb["thresholds"] and ma["metrics"] == mb["metrics"]
    assert ma["infer"]["mask_quantile"] == "auto" and len((a.dir / "history.jsonl").read_text().splitlines()) == 1


_FAKE: dict = {}  # _fake_run_cell's settings, seen by forked workers


def _fake_run_cell(cell, progress):
    """A cell that sleeps in place of training: it leaves ``started`` in its folder as it starts, and
    ``metrics.json`` if it ends (a CavgaError instead for a cell in ``_FAKE["fail"]``)."""
    import time

    cell.dir.mkdir(parents=True)
    (cell.dir / "started").touch()
    time.sleep(_FAKE["seconds"][(cell.model.name, cell.row)])
    if (cell.model.name, cell.row) in _FAKE["fail"]:
        raise CavgaError(f"cell {cell.model.name} {cell.row} failed")
    result = {"metrics": {"image_auroc": 0.5}}
    (cell.dir / "metrics.json").write_text(json.dumps(result))
    return result


def _fake_cells(monkeypatch, tmp_path, seconds: dict[tuple[str, str], float], fail=()):
    """A four-cell grid (categories 0, 1 by models A, B) whose cells are ``_fake_run_cell``s sleeping
    ``seconds[(model, category)]``, in forked workers (which see this monkeypatch; spawned ones would
    not); the cells' folders by (model, category)."""
    import multiprocessing

    fork = multiprocessing.get_context("fork")
    monkeypatch.setitem(_FAKE, "seconds", seconds)
    monkeypatch.setitem(_FAKE, "fail", fail)
    monkeypatch.setattr(grid_run, "run_cell", _fake_run_cell)
    monkeypatch.setattr(grid_workers.multiprocessing, "get_context", lambda method=None: fork)
    spec = G.parse_grid({"data": {"layout": "digits"}, "categories": [0, 1],
                         "models": [{"name": "A", "variant": "Du"}, {"name": "B", "variant": "Du"}]}, "g")  # fmt: skip
    return spec, {(c.model.name, c.row): c.dir for c in G.build_cells(spec, tmp_path / "out")}


@pytest.mark.skipif(os.name != "posix", reason="forks its workers")
def test_ctrl_c_with_jobs_stops_the_running_cells_and_starts_no_other(tmp_path, monkeypatch):
    """Ctrl-C to the grid process alone (here as its first cell finishes, with B 0 running and A 1 just
    handed on): the running cells stop, the queued B 1 never starts, and the grid returns at once."""
    import time

    spec, dirs = _fake_cells(monkeypatch, tmp_path, {("A", "0"): 0.5, ("B", "0"): 8, ("A", "1"): 8, ("B", "1"): 8})

    def on_cell(cell, status):
        if status == "finished":
            raise KeyboardInterrupt

    t0 = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        G.run_grid(spec, tmp_path / "out", progress=False, on_cell=on_cell, jobs=2)
    assert not dirs[("B", "1")].exists(), "a cell queued at the interrupt started"
    assert time.monotonic() - t0 < 6, "the grid waited for its running cells to finish"
    assert (dirs[("B", "0")] / "started").exists() and not (dirs[("B", "0")] / "metrics.json").exists()
    assert not (dirs[("A", "1")] / "metrics.json").exists()
    done = json.loads((tmp_path / "out" / "results.json").read_text())["cells"]
    assert [(c["model"], c["category"]) for c in done] == [("A", "0")]


@pytest.mark.skipif(os.name != "posix", reason="forks its workers")
def test_a_cell_that_ends_after_another_failed_is_tabled(tmp_path, monkeypatch):
    """--jobs 2, A 0 fails while B 0 runs: B 0 finishes and is in results.csv, the cells not yet
    started are dropped, then A 0's error is raised."""
    seconds = {("A", "0"): 1, ("B", "0"): 2.5, ("A", "1"): 0, ("B", "1"): 0}
    spec, dirs = _fake_cells(monkeypatch, tmp_path, seconds, fail=[("A", "0")])
    with pytest.raises(CavgaError, match="cell A 0 failed"):
        G.run_grid(spec, tmp_path / "out", progress=False, jobs=2)
    rows = (tmp_path / "out" / "results.csv").read_text().splitlines()
    assert len(rows) == 2 and rows[1].startswith("B,digits,0,0,"), rows
    assert not dirs[("A", "1")].exists() and not dirs[("B", "1")].exists()


def test_a_metric_name_the_tables_do_not_know_is_refused_before_anything_trains(tmp_path):
    from cavga.grid.spec import parse_grid

    raw = {"models": ["Du"], "data": {"layout": "digits"}, "categories": ["0"], "metrics": ["iou", "auroc"]}
    with pytest.raises(CavgaError, match=r"grid.metrics: unknown metric 'auroc' \(known: image_auroc, pixel_auroc"):
        parse_grid(raw)
    raw["metrics"] = ["image_auroc", "image_f1_max"]
    assert parse_grid(raw).datasets[0].metrics == ("image_auroc", "image_f1_max")


def test_an_empty_grid_and_an_unknown_key_say_so_plainly(tmp_path):
    from cavga.grid.spec import parse_grid

    with pytest.raises(CavgaError, match=r"^grid: empty; a grid names its models"):
        parse_grid(None)
    with pytest.raises(CavgaError, match=r"unknown key 'modles'") as caught:
        parse_grid({"modles": ["Du"]})
    known = str(caught.value).split("(known: ")[1].rstrip(")").split(", ")
    assert len(known) == len(set(known)) and "data" in known


def test_a_missing_category_stops_the_grid_before_its_first_cell_trains(tmp_path, monkeypatch):
    generate_demo_dataset(tmp_path / "data", seed=0, n_train=4, n_test_good=1, n_test_defect=1, crop=32)
    grid = _grid_file(tmp_path, tmp_path / "data", data={"root": str(tmp_path / "data"), "layout": "mvtec"})
    raw = yaml.safe_load(grid.read_text())
    raw["categories"] = ["brick", "brikc"]
    grid.write_text(yaml.safe_dump(raw))
    train_spy = Spy(grid_run.train)
    monkeypatch.setattr(grid_run, "train", train_spy)
    with pytest.raises(CavgaError, match=r"brikc: category 'brikc' not found \(categories found: brick\)"):
        G.run_grid(G.load_grid(grid), tmp_path / "out", progress=False)
    assert train_spy.calls == [] and not (tmp_path / "out").exists()


def test_a_seed_listed_twice_or_an_empty_model_list_is_refused():
    from cavga.grid.spec import parse_grid

    base = {"data": {"layout": "digits"}, "categories": ["0"]}
    with pytest.raises(CavgaError, match="seeds: the same seed is listed twice"):
        parse_grid({**base, "models": ["Du"], "seeds": [0, 0]})
    with pytest.raises(CavgaError, match="models must be a non-empty list"):
        parse_grid({**base, "models": []})
    assert [m.name for m in parse_grid(base).models] == ["Du"]  # no models key: Du
