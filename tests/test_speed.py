"""The speed benchmark's counting and the hot-path changes that must not change results."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from _scripts import benchmark_script
from cavga.accel import accel_for
from cavga.config import ModelConfig, RunConfig
from cavga.data.dataset import ImageDataset
from cavga.data.records import Record
from cavga.errors import CavgaError
from cavga.losses import adversarial_d_loss
from cavga.losslog import LossLog
from cavga.networks import build_networks
from cavga.speed import SpeedOptions, count_flops, measure_one, step_flops_by_part
from cavga.step import generator_loss, make_optimizers, train_step


def _tiny(variant: str = "Du", seed: int = 0):
    torch.manual_seed(seed)
    cfg = RunConfig()
    cfg.model = ModelConfig(variant=variant, base_channels=8, latent_channels=8)
    cfg.data.image_size = 32
    model, disc = build_networks(cfg.model, 32, allow_random_init=True)
    x = torch.rand(4, 3, 32, 32)  # (B, 3, S, S)
    labels = torch.tensor([0, 0, 0, 1]) if cfg.model.weakly_supervised else torch.zeros(4, dtype=torch.long)
    return cfg, model, disc, x, labels


def test_conv_and_linear_flops_match_the_hand_formula():
    conv = nn.Conv2d(3, 5, kernel_size=3, stride=2, padding=1)
    x = torch.rand(2, 3, 16, 16)  # (B, C, H, W) -> output (2, 5, 8, 8)
    assert count_flops(lambda: conv(x)) == 2 * 2 * 5 * 8 * 8 * 3 * 3 * 3
    lin = nn.Linear(7, 4)
    assert count_flops(lambda: lin(torch.rand(6, 7))) == 2 * 6 * 7 * 4
    # backward of a conv whose input needs no gradient: the weight gradient only, as much as the forward
    fwd = 2 * 2 * 5 * 8 * 8 * 3 * 3 * 3
    assert count_flops(lambda: conv(x).sum().backward()) == 2 * fwd


@pytest.mark.parametrize("variant", ["Du", "Dw"])
def test_parts_account_for_every_counted_flop_of_the_step(variant):
    """encoder + decoder + discriminator + Grad-CAM = the whole step as train_step runs it (so a
    step that computed D's weight gradients in G's step, which the parts leave out, fails here)."""
    cfg, model, disc, x, labels = _tiny(variant)
    model.track_attention_peak(torch.tensor(1.0))  # the running scale, as after a first step
    parts = step_flops_by_part(model, disc, cfg, x, labels)
    opt_g, opt_d = make_optimizers(model, disc, cfg)
    cw = torch.tensor([0.6, 2.0]) if variant == "Dw" else None
    total = count_flops(lambda: train_step(model, disc, opt_g, opt_d, x, labels, cfg, cw)) / 4
    assert all(v > 0 for v in parts.values()), parts
    assert sum(parts.values()) == pytest.approx(total, rel=1e-9)


def _reference_step(model, disc, opt_g, opt_d, x, labels, cfg):
    """train_step before this change: D's parameters keep requires_grad in G's step."""
    enc = model.encode(x)
    x_hat = model.decode(enc.z)
    d_loss = adversarial_d_loss(disc(x), disc(x_hat.detach()))
    opt_d.zero_grad(set_to_none=True)
    d_loss.backward()
    opt_d.step()
    total, terms = generator_loss(model, disc, x, labels, enc, x_hat, cfg)
    opt_g.zero_grad(set_to_none=True)
    total.backward()
    opt_g.step()
    terms["disc"] = d_loss
    return {k: float(v.detach()) for k, v in terms.items()}


def test_skipping_d_weight_gradients_in_g_step_changes_nothing():
    cfg, model, disc, x, labels = _tiny("Du", seed=3)
    model2, disc2 = copy.deepcopy(model), copy.deepcopy(disc)
    opts, opts2 = make_optimizers(model, disc, cfg), make_optimizers(model2, disc2, cfg)
    for _ in range(2):
        torch.manual_seed(7)
        new = train_step(model, disc, *opts, x, labels, cfg)
        torch.manual_seed(7)
        old = _reference_step(model2, disc2, *opts2, x, labels, cfg)
        assert {k: float(v) for k, v in new.items()} == old
    for (name, p), q in zip(list(model.named_parameters()) + list(disc.named_parameters()),
                            list(model2.parameters()) + list(disc2.parameters()), strict=True):  # fmt: skip
        assert torch.equal(p, q), name
    assert all(p.requires_grad for p in disc.parameters())  # D is trainable again after G's step


def test_loss_log_sums_as_per_step_floats_did_and_names_the_bad_step(tmp_path):
    steps = [{"rec": torch.tensor(1.5), "adv": torch.tensor(0.25)}, {"rec": torch.tensor(2.5), "adv": 0.75}]
    log = LossLog(3, tmp_path / "checkpoint.pt")
    for s in steps:
        log.add(s)
    assert log.read() == {"rec": 2.5, "adv": 0.75}
    log.add({"rec": torch.tensor(0.5), "adv": torch.tensor(0.5)})
    assert log.means() == {"rec": 1.5, "adv": 0.5}
    log.add({"rec": torch.tensor(float("nan")), "adv": torch.tensor(0.0)})
    with pytest.raises(CavgaError, match="epoch 3, step 4: loss rec=nan"):
        log.read()


def test_bf16_autocast_step_runs_with_float32_losses(monkeypatch):
    """train.bf16 acts on the CPU too (channels_last only where forced): the step runs, losses finite."""
    import cavga.accel as accel_module

    monkeypatch.setattr(accel_module, "native_bf16", lambda device: True)
    cfg, model, disc, x, labels = _tiny("Dw")
    cfg.train.bf16 = cfg.train.channels_last = True
    accel = accel_for(cfg.train, torch.device("cpu"), force=True)
    assert accel.autocast_dtype == torch.bfloat16 and accel.channels_last
    plain = accel_for(cfg.train, torch.device("cpu"))
    assert plain.autocast_dtype == torch.bfloat16 and not plain.channels_last  # channels_last: CUDA or forced
    accel.prepare(model, disc)
    opt_g, opt_d = make_optimizers(model, disc, cfg)
    with accel.autocast():
        losses = train_step(model, disc, opt_g, opt_d, accel.input(x), labels, cfg, torch.tensor([0.6, 2.0]))
    assert losses["rec"].dtype == torch.float32
    assert all(torch.isfinite(v) for v in losses.values())


def test_bf16_on_a_cpu_without_bf16_instructions_is_applied_with_a_warning(monkeypatch, recwarn):
    import cavga.accel as accel_module

    cfg = RunConfig()
    assert accel_for(cfg.train, torch.device("cpu")).autocast_dtype is None  # off unless asked
    cfg.train.bf16 = True
    monkeypatch.setattr(accel_module, "native_bf16", lambda device: True)
    assert accel_for(cfg.train, torch.device("cpu")).autocast_dtype == torch.bfloat16
    assert not recwarn.list  # native: no warning
    monkeypatch.setattr(accel_module, "native_bf16", lambda device: False)
    with pytest.warns(UserWarning, match="no bf16 instructions .* --set train.bf16=false"):
        assert accel_for(cfg.train, torch.device("cpu")).autocast_dtype == torch.bfloat16


def test_native_bf16_reads_the_cpus_instructions(monkeypatch):
    from cavga.accel import native_bf16

    cpu = torch.device("cpu")
    for avx512_bf16, amx in ((False, False), (True, False), (False, True)):
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda v=avx512_bf16: v, raising=False)
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda v=amx: v, raising=False)
        assert native_bf16(cpu) == (avx512_bf16 or amx)
    monkeypatch.delattr(torch.cpu, "_is_avx512_bf16_supported")
    monkeypatch.delattr(torch.cpu, "_is_amx_tile_supported")
    assert not native_bf16(cpu)  # a torch without the checks: no
    assert native_bf16(torch.device("cuda"))


def test_train_bf16_on_the_cpu_trains_under_autocast(tmp_path, monkeypatch):
    """``--set train.bf16=true`` on the CPU: every training step runs under bf16 autocast, and the run
    finishes with finite losses; without it no step does."""
    import math
    import warnings

    import cavga.train as train_module
    from _tiny_run import make_data
    from cavga.cli import main
    from cavga.runfolder import read_history

    data = make_data(tmp_path / "data")
    seen, real = [], train_module.train_step

    def spy(*args, **kwargs):
        seen.append(torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16)
        return real(*args, **kwargs)

    monkeypatch.setattr(train_module, "train_step", spy)
    for bf16 in ("true", "false"):
        seen.clear()
        args = [
            "train", "--data", str(data), "--layout", "mvtec", "--category", "brick", "--model", "Du",
            "--out", str(tmp_path / bf16), "--epochs", "1", "--image-size", "32", "--batch-size", "4",
            "--device", "cpu", "--no-progress", "--set", "model.base_channels=8",
            "--set", "model.latent_channels=8", "--set", f"train.bf16={bf16}",
        ]  # fmt: skip
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the emulation warning, on a CPU without bf16 instructions
            assert main(args) == 0
        assert seen and all(seen) == (bf16 == "true") and any(seen) == (bf16 == "true")
        (record,) = read_history(tmp_path / bf16)  # the one epoch's mean losses
        assert {"rec", "adv", "ae"} <= record.keys() and all(math.isfinite(record[k]) for k in ("rec", "adv", "ae"))


def test_image_cache_stops_at_its_memory_bound(tmp_path):
    from PIL import Image

    records = []
    for i in range(5):
        path = tmp_path / f"{i}.png"
        Image.new("RGB", (20, 20), (i * 40, 0, 0)).save(path)
        records.append(Record(str(path), None, 0, "good"))
    per_sample_mb = 16 * 32 * 32 / 2**20  # image and mask, float32, at 32 px
    ds = ImageDataset(records, 32, cache=True, cache_limit_mb=2.5 * per_sample_mb)
    first = [ds[i].image for i in range(5)]
    assert ds.cached == 2
    assert all(torch.equal(ds[i].image, first[i]) for i in range(5))  # cached or not, the same pixels
    assert ImageDataset(records, 32, cache=True).cached == 0 and len(ImageDataset(records, 32)) == 5


def test_measure_one_returns_every_field():
    opts = SpeedOptions(warmup=0, steps=1, threads=1, probe_peak=False)  # fractions of the peak given
    row = measure_one("Du", 32, 2, torch.device("cpu"), opts, {"fp32": 1e10})
    for m in (row.train, row.infer):
        assert m.images_per_s > 0 and m.gflop_per_image > 0 and m.peak_dtype == "fp32"
        assert m.fraction_of_peak == _fraction_of(m.achieved_gflop_s, 10)
    assert set(row.gflop_by_part) == {"encoder", "decoder", "discriminator", "gradcam"}
    assert row.train.gflop_per_image > row.infer.gflop_per_image


def _fraction_of(achieved_gflop_s: float, peak_gflop_s: float):
    """achieved / peak, within what the stored roundings allow (the fraction to 4 decimals, the
    rate to 2): on a loaded machine the rate is small and a relative tolerance would not hold."""
    return pytest.approx(achieved_gflop_s / peak_gflop_s, abs=5e-5 + 0.005 / peak_gflop_s)


def test_frozen_option_measures_the_defaults_pretrained_step():
    """--frozen: the encoder gets no weight gradients, so the step costs fewer FLOPs than the
    from-scratch one; its attention is the frozen default's mu_energy."""
    from cavga.speed.bench import _config

    cpu = torch.device("cpu")
    rows = {}
    for frozen in (False, True):
        opts = SpeedOptions(warmup=0, steps=1, threads=1, probe_peak=False, frozen=frozen)
        rows[frozen] = measure_one("Du", 32, 2, cpu, opts, {"fp32": 1e10}, inference=False)
    assert rows[True].train.gflop_per_image < 0.9 * rows[False].train.gflop_per_image
    m = _config("Du", 32, 2, frozen=True).model
    assert (m.encoder_init, m.freeze_encoder, m.attention_score) == ("distill", True, "mu_energy")
    assert _config("Ru", 32, 2).model.freeze_encoder is False


def test_each_fraction_is_of_the_matmul_rate_probed_between_its_steps(monkeypatch):
    """The machine's limit drifts: a row's fraction is of the matmul rate measured between its timed
    steps (their median), not of the peak at the start of the run."""
    from cavga.speed import run_speed

    monkeypatch.setattr("cavga.speed.bench.matmul_peak", lambda device, dtype: 1e10)  # the run's start and end
    rates = iter([2e10, 4e10, 5e10] + [8e10, 1e11, 9e10])  # probed before each training, then inference, step
    monkeypatch.setattr("cavga.speed.flops.MatmulProbe.__call__", lambda self: next(rates))
    opts = SpeedOptions(variants=("Du",), sizes=(32,), batch=2, devices=("cpu",), warmup=0, steps=3, threads=1)
    opts.sweep_sizes, opts.sweep_batches = (), ()
    cpu = run_speed(opts, progress=lambda line: None)["devices"]["cpu"]
    assert cpu["peak_gflop_s"] == {"fp32": 10.0} and cpu["peak_gflop_s_after"] == {"fp32": 10.0}
    train, infer = cpu["rows"][0]["train"], cpu["rows"][0]["infer"]
    for m, median in ((train, 40.0), (infer, 90.0)):
        assert m["peak_gflop_s"] == median
        assert m["fraction_of_peak"] == _fraction_of(m["achieved_gflop_s"], median)


def test_speed_script_writes_json_and_table(tmp_path, monkeypatch):
    import json

    script = benchmark_script("speed")
    monkeypatch.setattr("cavga.speed.bench.matmul_peak", lambda device, dtype: 1e10)
    args = ["--variants", "Du", "--sizes", "32", "--batch", "2", "--warmup", "0", "--steps", "1", "--threads", "1"]
    args += ["--sweep-sizes", "32", "--sweep-batches", "2", "--out", str(tmp_path), "--name", "t", "--devices", "cpu"]
    assert script.main(args) == 0
    result = json.loads((tmp_path / "t.json").read_text())
    cpu = result["devices"]["cpu"]
    assert cpu["peak_gflop_s"] == {"fp32": 10.0} and len(cpu["rows"]) == 1 and len(cpu["sweep"]) == 2
    assert "| Du | 32 | 2 |" in (tmp_path / "t.md").read_text()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_measure_one_on_cuda_uses_bf16_and_its_peak():
    from cavga.speed.bench import machine_peaks

    device = torch.device("cuda")
    peaks = machine_peaks(device)
    assert set(peaks) == {"fp32", "bf16"}
    row = measure_one("Dw", 64, 4, device, SpeedOptions(warmup=1, steps=1), peaks)
    assert row.train.peak_dtype == "bf16" and row.train.images_per_s > 0 and row.train.peak_memory_rise_mb > 0
    assert row.infer.peak_dtype == "fp32" and row.infer.images_per_s > 0


def test_ab_alternate_times_each_call_in_turns_after_one_warm_up_round(monkeypatch):
    from cavga.speed import ab

    clock, order = [0.0], []

    def call(name, cost):
        def run():
            order.append(name)
            clock[0] += cost if len(order) > 2 else 100.0  # the warm-up round is slow and not counted

        return run

    monkeypatch.setattr(ab.time, "perf_counter", lambda: clock[0])
    medians = ab.alternate({"a": call("a", 1.0), "b": call("b", 3.0)}, repeats=4)
    assert medians == {"a": 1.0, "b": 3.0}
    assert order == ["a", "b", "b", "a", "a", "b", "b", "a", "a", "b"]  # one round each way in turn


def test_ab_alternate_settings_applies_each_before_its_call_and_restores():
    from cavga.speed import ab

    state, seen = {"v": "library"}, []
    ab.alternate_settings(
        lambda v: state.update(v=v), {"a": "A", "b": "B"}, lambda: seen.append(state["v"]), 2, restore="library"
    )
    assert seen == ["A", "B", "B", "A", "A", "B"] and state["v"] == "library"


def test_report_keeps_three_significant_digits_of_milliseconds():
    from cavga.speed.report import _ms

    # a GPU's 1.55 ms per image must not print as "2" (nor a CPU's 161.3 ms as "161.3")
    assert (_ms(161.27), _ms(1.554), _ms(0.3081)) == ("161", "1.55", "0.308")


def test_the_speed_script_refuses_zero_timed_steps(capsys):
    speed = benchmark_script("speed")
    with pytest.raises(SystemExit):
        speed.main(["--steps", "0", "--variants", "Du", "--sizes", "32", "--devices", "cpu"])
    assert "--steps 0: must be 1 or more" in capsys.readouterr().err


def test_fp32_probe_runs_with_the_convolutions_tf32_setting_and_restores_it(monkeypatch):
    """On CUDA cuDNN convolutions run in TF32 by default, plain fp32 matmuls not: the fp32 probe
    takes the convolutions' setting for its own products (then puts the matmul flag back)."""
    from cavga.speed import flops

    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    assert flops.fp32_tf32(torch.device("cuda")) is False and flops.fp32_tf32(torch.device("cpu")) is None
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", True)
    assert flops.fp32_tf32(torch.device("cuda")) is True
    monkeypatch.setattr(flops, "fp32_tf32", lambda device: True)  # as on CUDA (the flag is harmless on a CPU)
    seen, mm = [], torch.mm

    def spy(*args, **kw):
        seen.append(torch.backends.cuda.matmul.allow_tf32)
        return mm(*args, **kw)

    monkeypatch.setattr(torch, "mm", spy)
    before = torch.backends.cuda.matmul.allow_tf32  # a property monkeypatch cannot restore
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        probe = flops.MatmulProbe(torch.device("cpu"), torch.float32, n=8, repeats=2)
        assert probe() > 0 and probe.tf32 is True and seen == [True, True, True]
        assert torch.backends.cuda.matmul.allow_tf32 is False  # restored
    finally:
        torch.backends.cuda.matmul.allow_tf32 = before
    assert flops.MatmulProbe(torch.device("cpu"), torch.bfloat16, n=8).tf32 is None  # bf16: no TF32


def test_cpu_peak_memory_fallback_reads_ru_maxrss_in_the_platforms_unit(monkeypatch):
    """getrusage's ru_maxrss is KB on Linux but bytes on macOS."""
    from types import SimpleNamespace

    from cavga.speed import measure

    monkeypatch.setattr(measure.resource, "getrusage", lambda who: SimpleNamespace(ru_maxrss=2048 * 1024))
    monkeypatch.setattr(measure.sys, "platform", "darwin")
    assert measure._maxrss_kb() == 2048
    monkeypatch.setattr(measure.sys, "platform", "linux")
    assert measure._maxrss_kb() == 2048 * 1024


def test_run_speed_silences_the_made_up_normalisers_warning_and_rounds_the_load(monkeypatch):
    import warnings

    from cavga.speed import run_speed
    from cavga.speed.bench import environment

    monkeypatch.setattr("cavga.speed.bench.os.getloadavg", lambda: (4.66123, 1.0, 1.0))
    assert environment()["load_average_1min"] == 4.66
    monkeypatch.setattr("cavga.speed.bench.matmul_peak", lambda device, dtype: 1e10)
    opts = SpeedOptions(variants=("Dw",), sizes=(32,), batch=2, devices=("cpu",), warmup=0, steps=1, threads=1)
    opts.sweep_sizes, opts.sweep_batches, opts.probe_peak = (), (), False
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run_speed(opts, progress=lambda line: None)
    assert not [w for w in caught if "held-out" in str(w.message)]


def test_ab_refuses_no_rounds_and_keeps_every_rounds_times(tmp_path, capsys):
    import json
    from types import SimpleNamespace

    from cavga.speed import ab

    for bad in (["--repeats", "0"], ["--size", "100"], ["--variants", "Du,PatchCore"], ["--threads", "0"]):
        with pytest.raises(SystemExit):
            ab.parser("t", "Du", 3, "x.json").parse_args(bad)
    assert "--repeats: 0: must be 1 or more" in capsys.readouterr().err.replace("argument ", "")
    with pytest.raises(ValueError):
        ab.alternate({"a": lambda: None}, 0)
    ab.ROUNDS.clear()
    ab.alternate({"a": lambda: None, "b": lambda: None}, 3)
    args = SimpleNamespace(size=32, batch=2, threads=1, repeats=3)
    result = json.loads(ab.write_comparison(tmp_path / "r.json", args, (1.0, 1.0), []).read_text())
    assert [len(v) for v in result["seconds_per_round"][0].values()] == [3, 3]
