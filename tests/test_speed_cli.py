"""The speed benchmark's command line: `cavga benchmark --speed` and benchmarks/speed.py, every
option checked before anything is measured, and where the report goes."""

from __future__ import annotations

import json

import pytest
import torch

from _scripts import benchmark_script
from cavga.cli import main as cli
from cavga.errors import CavgaError
from cavga.speed.bench import Measured, SpeedRow

TINY = ["--variants", "Du", "--sizes", "32", "--batch", "2", "--warmup", "1", "--steps", "1", "--threads", "1"]
TINY += ["--no-sweep", "--devices", "cpu"]


def _row(variant, size, batch, device, opts, peaks, inference=True) -> SpeedRow:
    m = Measured(10.0, 100.0, 1.0, 0.5, 5.0, 0.05, "fp32", 100.0)
    return SpeedRow(variant, str(device), size, batch, m, m if inference else None, dict.fromkeys(
        ("encoder", "decoder", "discriminator", "gradcam"), 0.125))  # fmt: skip


@pytest.fixture
def fake_rows(monkeypatch):
    """Rows made up, not measured (the measurement has tests of its own); the settings asked for."""
    asked = []

    def measure(*args, **kw):
        asked.append(args[:3])
        return _row(*args, **kw)

    monkeypatch.setattr("cavga.speed.bench.measure_one", measure)
    monkeypatch.setattr("cavga.speed.bench.matmul_peak", lambda device, dtype: 1e11)
    return asked


def test_cavga_benchmark_speed_runs_the_benchmark(fake_rows, tmp_path, capsys):
    assert cli(["benchmark", "--speed", *TINY, "--out", str(tmp_path), "--name", "t"]) == 0
    result = json.loads((tmp_path / "t.json").read_text())
    assert result["command"].startswith("cavga benchmark --speed --variants Du")
    assert len(result["devices"]["cpu"]["rows"]) == 1 and fake_rows == [("Du", 32, 2)]
    assert "| Du | 32 | 2 |" in (tmp_path / "t.md").read_text()
    # what of the options applied on the device: bf16 and channels_last are CUDA's only
    assert result["devices"]["cpu"]["applied"] == {"bf16": False, "channels_last": False, "compile": False}


def test_cavga_benchmark_speed_help_names_its_options_and_default_folder(capsys):
    with pytest.raises(SystemExit) as e:
        cli(["benchmark", "--speed", "--help"])
    out = capsys.readouterr().out
    assert e.value.code == 0 and "--sweep-batches" in out and "speed-results" in out
    # what the sweeps measure, whatever --sizes: Du's training, the batch sweep at 128 px
    flat = " ".join(out.split())
    assert "Du's training at 128 px, whatever --sizes" in flat and "Du's training at --batch" in flat
    with pytest.raises(SystemExit):
        cli(["benchmark", "--help"])
    assert "--speed" in capsys.readouterr().out


def test_speed_does_not_mix_with_the_training_benchmark(fake_rows, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        cli(["benchmark", "--speed", "--grid", "g.yaml", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "--grid g.yaml" in err and "training benchmark" in err and not fake_rows


@pytest.mark.parametrize(
    "bad, says",
    [
        (["--variants", "PatchCore"], "choose from Du, Ru, Dw, Rw"),
        (["--variants", "Du,AE-SSIM"], "--variants AE-SSIM"),
        (["--sizes", "0"], "--sizes 0"),
        (["--sizes", "-32"], "--sizes -32"),
        (["--sizes", "abc"], "'abc' is not a comma-separated list of integers"),
        (["--sizes", "100"], "powers of two >= 32"),
        (["--sweep-sizes", "32,100"], "--sweep-sizes 100"),
        (["--batch", "0"], "--batch 0"),
        (["--sweep-batches", "4,0"], "--sweep-batches 0:"),
        (["--threads", "0"], "--threads 0"),
        (["--warmup", "-1"], "--warmup -1: must be 0 or more"),
        (["--name", "../escape"], "--name ../escape: give a file name, not a path"),
        (["--name", "sub/res.json"], "--name sub/res.json: give a file name"),
        (["--name", ".."], "--name ..: give a file name"),
        (["--devices", "tpu"], "choose from cpu, cuda"),
        (["--compile", "--warmup", "0"], "--compile needs --warmup 1 or more"),
    ],
)
def test_every_option_is_checked_before_anything_is_measured(bad, says, fake_rows, tmp_path, capsys):
    """A bad value is an argparse error (exit 2, one line) before the first row, not a crash
    (or a baseline measured as a CAVGA network) after the finished rows."""
    speed = benchmark_script("speed")
    with pytest.raises(SystemExit) as e:
        sweep = ["--sweep-sizes", "32", "--sweep-batches", "2"]
        speed.main([*(a for a in TINY if a != "--no-sweep"), *sweep, "--out", str(tmp_path), *bad])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and says in err[-1] and err[-1].startswith("python benchmarks/speed.py: error:")
    assert not fake_rows and not list(tmp_path.iterdir())


def test_an_error_names_only_the_bad_option(fake_rows, tmp_path, capsys):
    """--threads 0 with a valid --warmup blames --threads alone (and the other way round)."""
    for bad, good in ((["--threads", "0"], "--warmup"), (["--warmup", "-1"], "--threads")):
        with pytest.raises(SystemExit):
            cli(["benchmark", "--speed", *TINY, *bad, "--out", str(tmp_path)])
        err = capsys.readouterr().err.strip().splitlines()[-1]  # the error line, below the usage
        assert f"{bad[0]} {bad[1]}" in err and good not in err, err
    assert not fake_rows


def test_baselines_are_no_speed_variant():
    from cavga.speed.bench import _config

    with pytest.raises(CavgaError, match="Du, Ru, Dw, Rw only"):
        _config("PatchCore", 32, 2)


def test_no_available_device_is_an_error_and_a_skipped_one_is_said(fake_rows, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    speed = benchmark_script("speed")
    with pytest.raises(SystemExit) as e:
        speed.main([*TINY, "--devices", "cuda", "--out", str(tmp_path)])
    assert e.value.code == 2 and "none is available here" in capsys.readouterr().err
    assert speed.main([*TINY, "--devices", "cpu,cuda", "--out", str(tmp_path), "--name", "t"]) == 0
    assert json.loads((tmp_path / "t.json").read_text())["skipped_devices"] == ["cuda"]
    assert "Skipped (not available here): cuda." in (tmp_path / "t.md").read_text()


def test_output_is_checked_up_front_and_never_overwritten_silently(fake_rows, tmp_path, capsys):
    speed = benchmark_script("speed")
    assert speed.main([*TINY, "--out", str(tmp_path), "--name", "res.json"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["res.json", "res.md"]  # not res.json.json
    (tmp_path / "res.md").write_text("kept")
    with pytest.raises(SystemExit) as e:
        speed.main([*TINY, "--out", str(tmp_path), "--name", "res"])
    assert e.value.code == 2 and "pass --overwrite" in capsys.readouterr().err
    assert (tmp_path / "res.md").read_text() == "kept" and len(fake_rows) == 1
    assert speed.main([*TINY, "--out", str(tmp_path), "--name", "res.md", "--overwrite"]) == 0
    assert (tmp_path / "res.md").read_text() != "kept"
    afile = tmp_path / "afile"
    afile.write_text("")
    for out in (afile, afile / "sub"):
        with pytest.raises(SystemExit):
            speed.main([*TINY, "--out", str(out)])
        assert "is a file, not a folder" in capsys.readouterr().err
    assert len(fake_rows) == 2  # neither was measured


def test_a_failing_row_keeps_the_rows_done(fake_rows, tmp_path, monkeypatch, capsys):
    def measure(variant, size, *args, **kw):
        if size == 64:
            raise RuntimeError("out of memory")
        return _row(variant, size, *args, **kw)

    monkeypatch.setattr("cavga.speed.bench.measure_one", measure)
    speed = benchmark_script("speed")
    with pytest.raises(RuntimeError):
        speed.main([*TINY, "--sizes", "32,64", "--out", str(tmp_path), "--name", "t"])
    result = json.loads((tmp_path / "t.json").read_text())
    assert [r["image_size"] for r in result["devices"]["cpu"]["rows"]] == [32]
    assert result["error"] == "cpu Du 64 px batch 2: RuntimeError: out of memory"
    assert "Stopped by an error" in (tmp_path / "t.md").read_text()


def test_tf32_probe_setting_and_frozen_set_up_are_recorded_and_labelled(fake_rows, tmp_path, monkeypatch):
    monkeypatch.setattr("cavga.speed.bench.fp32_tf32", lambda device: True)  # as on CUDA
    assert cli(["benchmark", "--speed", *TINY, "--frozen", "--out", str(tmp_path), "--name", "t"]) == 0
    assert json.loads((tmp_path / "t.json").read_text())["devices"]["cpu"]["fp32_peak_tf32"] is True
    md = (tmp_path / "t.md").read_text()
    assert "(fp32 TF32)" in md and "train peak rise MB" in md
    assert "random weights standing in for the pretrained ones" in md and "pretrained and frozen" not in md


def test_ddp_scaling_checks_its_options_and_sets_up_as_the_speed_benchmark(tmp_path, capsys):
    ddp = benchmark_script("ddp_scaling")
    with pytest.raises(SystemExit) as e:
        ddp.parse(["--batch", "15"])
    assert e.value.code == 2 and "--batch 15: must be even" in capsys.readouterr().err
    args = ddp.parse(["--size", "32", "--batch", "2", "--out", str(tmp_path / "d.json")])
    assert args.out == tmp_path / "d.json"
    cfg = ddp._setup(args, 1)[0]
    assert (cfg.model.encoder_init, cfg.model.freeze_encoder, cfg.train.batch_size) == ("dcgan", False, 1)


def test_export_speed_takes_the_median_of_interleaved_rounds(monkeypatch):
    from cavga.speed import ab

    export_speed = benchmark_script("export_speed")
    clock, order = [0.0], []
    cost = {"eager": [100, 1, 9, 1, 1], "onnx": [100, 2, 2, 9, 2]}  # warm-up round, then 4 rounds

    def predictor(name):
        def run(x):
            order.append(name)
            clock[0] += cost[name].pop(0)

        return run

    monkeypatch.setattr(ab.time, "perf_counter", lambda: clock[0])
    rates = export_speed.images_per_s({k: predictor(k) for k in cost}, torch.zeros(2, 3, 4, 4), repeats=4)
    assert rates == {"eager": 2.0, "onnx": 1.0}  # 2 images / median 1 s and 2 s (not the best round)
    assert order[:4] == ["eager", "onnx", "onnx", "eager"]
