"""CAVGA-D's pretrained start (cavga.distill): the encoder learns the teacher's features, only from
training images, and CAVGA's training then starts from it (fixed when frozen)."""

import math

import pytest
import torch

from _painted_runs import same
from _tiny_run import make_data
from cavga.backbones import EfficientNetLite0Encoder
from cavga.cli import main
from cavga.config import DataConfig, DistillConfig, RunConfig, from_dict, to_dict
from cavga.data import ImageDataset, load_split, make_loader
from cavga.distill import (
    OWN_ENCODER,
    SHARED_ENCODER,
    _channel_stats,
    block_outputs,
    cut_paste,
    distill_encoder,
    distilled_start,
    masked_mse,
    teacher_features,
)
from cavga.errors import CavgaError
from cavga.fingerprint import config_fingerprint
from cavga.networks import DCGANEncoder
from cavga.restarts import candidate_dir
from cavga.runfolder import RunData
from cavga.runtime import load_checkpoint


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_data(tmp_path_factory.mktemp("distill-data"))


def _loader(data, size=32):
    split = load_split(DataConfig(root=str(data), layout="mvtec", category="brick", image_size=size))
    return make_loader(ImageDataset(split.train, size, cache=True), size, 4, True, 0, 0)


def test_teacher_statistics_match_a_hand_computation(teacher_file, data):
    teacher = EfficientNetLite0Encoder(str(teacher_file), stride=16).eval()
    loader = _loader(data)
    batches = [b.image for b in loader]
    stats = _channel_stats(teacher, ((x, None) for x in batches), [4, 8, 16])
    with torch.no_grad():
        for (mean, std), s in zip(stats, [4, 8, 16], strict=True):
            f = torch.cat([teacher_features(teacher, x, [s])[0] for x in batches])  # (N, C, 32/s, 32/s)
            assert f.shape[2] == 32 // s
            ref = f.transpose(0, 1).flatten(1)  # (C, N*h*w)
            torch.testing.assert_close(mean.flatten(), ref.mean(1), rtol=1e-4, atol=1e-5)
            torch.testing.assert_close(std.flatten(), ref.std(1, unbiased=False) + 1e-3, rtol=1e-3, atol=1e-4)


def test_padding_enters_neither_the_statistics_nor_the_loss(teacher_file, data):
    """With ``data.resize`` pad the teacher's statistics and the distillation loss count content only:
    on images whose right half is padding (whole cells at strides 4, 8 and 16) the statistics are
    those of the left half's positions alone, and the loss does not see what lies on the padding."""
    teacher = EfficientNetLite0Encoder(str(teacher_file), stride=16).eval()
    batches = [b.image for b in _loader(data)]  # (4, 3, 32, 32) each
    valid = torch.zeros(4, 1, 32, 32)
    valid[..., :16] = 1  # the left half is content
    stats = _channel_stats(teacher, ((x, valid[: len(x)]) for x in batches), [4, 8, 16])
    with torch.no_grad():
        for (mean, std), s in zip(stats, [4, 8, 16], strict=True):
            f = torch.cat([teacher_features(teacher, x, [s])[0] for x in batches])  # (N, C, 32/s, 32/s)
            ref = f[..., : 16 // s].transpose(0, 1).flatten(1)  # (C, N*h*w/2): the content's positions
            torch.testing.assert_close(mean.flatten(), ref.mean(1), rtol=1e-4, atol=1e-5)
            torch.testing.assert_close(std.flatten(), ref.std(1, unbiased=False) + 1e-3, rtol=1e-3, atol=1e-4)

    g = torch.Generator().manual_seed(0)
    pred, target = torch.randn(2, 3, 4, 4, generator=g), torch.randn(2, 3, 4, 4, generator=g)
    torch.testing.assert_close(masked_mse(pred, target, torch.ones(1, 1, 1, 1)), ((pred - target) ** 2).mean())
    w = torch.zeros(2, 1, 4, 4)
    w[..., :2] = 1.0  # content on the left two columns
    w[1, ..., 1] = 0.5  # a cell half content
    other = pred.clone()
    other[..., 2:] += 100  # the padding's predictions changed
    by_hand = (((pred - target) ** 2) * w).sum() / (w.sum() * 3)
    torch.testing.assert_close(masked_mse(pred, target, w), by_hand)
    torch.testing.assert_close(masked_mse(other, target, w), by_hand)


def test_distillation_teaches_the_encoder_the_teachers_features(teacher_file, data):
    """The loss falls well below its start, only the encoder learns (the teacher is untouched), and
    the encoder's own maps predict the teacher's better than a fresh encoder's do."""
    torch.manual_seed(0)
    teacher = EfficientNetLite0Encoder(str(teacher_file), stride=16)
    before_teacher = {k: v.clone() for k, v in teacher.state_dict().items()}
    encoder = DCGANEncoder(3, 8, 16)
    fresh = DCGANEncoder(3, 8, 16)
    fresh.load_state_dict(encoder.state_dict())
    loader = _loader(data, 64)
    losses = distill_encoder(encoder, teacher, loader, DistillConfig(epochs=20, augment="none"), torch.device("cpu"))
    assert len(losses) == 20 and losses[-1] < 0.6 * losses[0]
    assert all(torch.equal(v, teacher.state_dict()[k]) for k, v in before_teacher.items())
    assert not torch.equal(encoder.body[3][0].weight, fresh.body[3][0].weight)

    # the best linear read-out of the stride-8 map (512 positions, 33 unknowns per teacher channel):
    # the distilled encoder's map explains more of the teacher's than a fresh encoder's does
    x = torch.cat([b.image for b in loader])  # (N, 3, 64, 64)
    with torch.no_grad():
        t = teacher_features(teacher.eval(), x, [8])[0].permute(0, 2, 3, 1).flatten(0, 2)  # (N*64, 40)

        def explained(enc):
            # batch statistics in both (the distilled encoder's running ones would favour it unfairly)
            f = block_outputs(enc.train(), x, [2])[0].permute(0, 2, 3, 1).flatten(0, 2)  # (N*64, 32)
            f = torch.cat([f, torch.ones(len(f), 1)], 1)
            w = torch.linalg.lstsq(f, t).solution
            return 1 - ((f @ w - t) ** 2).sum() / ((t - t.mean(0)) ** 2).sum()

        assert explained(encoder) > explained(fresh) + 0.05  # measured 0.84 against 0.74


def _train(data, out, *extra):
    args = [
        "train", "--data", str(data), "--layout", "mvtec", "--category", "brick", "--model", "Du",
        "--out", str(out), "--epochs", "2", "--image-size", "32", "--batch-size", "4", "--device", "cpu",
        "--no-progress", "--set", "model.base_channels=8", "--set", "model.latent_channels=8",
        "--set", "data.val_fraction=0.3", *extra,
    ]  # fmt: skip
    assert main(args) == 0
    return load_checkpoint(out / "checkpoint.pt")


def test_a_frozen_distilled_encoder_is_what_training_ends_with(teacher_file, data, tmp_path, monkeypatch):
    """With encoder_init distill and a frozen encoder the checkpoint's encoder is the distilled one
    (CAVGA's steps leave it alone), distillation saw only training images, and the log-variance head
    starts at zero as for any pretrained encoder."""
    import cavga.distill as distill_module

    seen, distilled = [], {}
    real = distill_module.distill_encoder

    def spy(encoder, teacher, loader, *args, **kwargs):
        seen.extend(p for b in loader for p in b.path)
        out = real(encoder, teacher, loader, *args, **kwargs)
        distilled.update({k: v.clone() for k, v in encoder.state_dict().items()})
        return out

    monkeypatch.setattr(distill_module, "distill_encoder", spy)
    state = _train(
        data, tmp_path / "frozen", "--set", "model.encoder_init=distill", "--set", "model.freeze_encoder=true",
        "--set", f"distill.teacher_weights={teacher_file}", "--set", "distill.epochs=2",
        "--set", "train.restarts=1",  # one distillation: the spy's is the run's (restarts choose among several)
    )  # fmt: skip
    run = RunData.load(tmp_path / "frozen")
    assert seen and set(seen) <= {str(r.image_path) for r in run.train}  # never a held-out or test image
    enc = {k[len("encoder.") :]: v for k, v in state["model"].items() if k.startswith("encoder.")}
    assert enc.keys() == distilled.keys()
    assert all(torch.equal(enc[k], distilled[k]) for k in enc)
    assert state["backbone_weights"].startswith("distilled from EfficientNet-Lite0")

    fresh = _train(data, tmp_path / "dcgan")  # the same run from DCGAN's init: a different encoder
    assert not torch.equal(fresh["model"]["encoder.body.3.0.weight"], enc["body.3.0.weight"])
    assert fresh["backbone_weights"] == "dcgan-init"


def test_encoder_start_settings_are_checked_and_keep_old_runs_identity():
    for overrides, message in (
        ({"encoder_init": "celeba"}, "model.encoder_init"),
        ({"variant": "Ru", "encoder_init": "distill"}, "distill is for CAVGA-D"),
        ({"freeze_encoder": True, "encoder_init": "dcgan"}, "frozen only after model.encoder_init: distill"),
    ):
        cfg = RunConfig()
        for k, v in overrides.items():
            setattr(cfg.model, k, v)
        with pytest.raises(CavgaError, match=message):
            cfg.validate()
    cfg = RunConfig()
    cfg.model.encoder_init, cfg.distill.augment = "distill", "rotate"
    with pytest.raises(CavgaError, match="distill.augment"):
        cfg.validate()
    cfg.distill.augment, cfg.distill.cutpaste = "dihedral", 1.5
    with pytest.raises(CavgaError, match=r"distill.cutpaste: 1.5 is outside \[0, 1\]"):
        cfg.validate()

    scratch = RunConfig()
    scratch.model.encoder_init = "dcgan"
    saved_before = to_dict(scratch)
    del saved_before["model"]["encoder_init"], saved_before["distill"]  # a config.yaml from before
    assert config_fingerprint(saved_before) == config_fingerprint(to_dict(scratch))
    distilled = RunConfig()
    distilled.model.encoder_init = "distill"
    longer = RunConfig()
    longer.model.encoder_init, longer.distill.epochs = "distill", 200
    unpasted = RunConfig()
    unpasted.model.encoder_init, unpasted.distill.cutpaste = "distill", 0.0
    assert distilled.distill.cutpaste == 0.5  # the default since session 29
    assert len({config_fingerprint(to_dict(c)) for c in (scratch, distilled, longer, unpasted)}) == 4
    before_cutpaste = to_dict(distilled)
    del before_cutpaste["distill"]["cutpaste"]  # a distilled run saved before distill.cutpaste existed
    as_saved = from_dict(before_cutpaste, "checkpoint.pt", saved=True)
    assert as_saved.distill.cutpaste == 0.0  # it was distilled without patches, and keeps its identity
    assert config_fingerprint(to_dict(as_saved)) == config_fingerprint(before_cutpaste)
    assert from_dict(before_cutpaste).distill.cutpaste == 0.5  # a user's config without the key: the default
    distilled.model.freeze_encoder = True
    assert distilled.validate().model.label == "CAVGA-Du (distilled from EfficientNet-Lite0, frozen)"


def test_a_missing_teacher_is_one_line_before_any_run_folder(data, tmp_path, monkeypatch, capsys):
    """Without the Lite0 package the distilled start stops with how to get the teacher, and writes nothing."""
    import cavga.backbones as backbones

    def no_package():
        raise CavgaError("EfficientNet-Lite0 ImageNet weights need the optional package")

    monkeypatch.setattr(backbones, "lite0_weights_path", no_package)
    out = tmp_path / "run"
    args = ["train", "--data", str(data), "--layout", "mvtec", "--category", "brick", "--model", "Du",
            "--out", str(out), "--epochs", "1", "--image-size", "32", "--device", "cpu", "--no-progress",
            "--encoder-init", "distill"]  # fmt: skip
    assert main(args) != 0
    err = capsys.readouterr().err
    assert "distill needs the ImageNet EfficientNet-Lite0 teacher" in err and "distill.teacher_weights=PATH" in err
    assert not (out / "config.yaml").exists() and not (out / "checkpoint.pt").exists()


def test_cut_paste_moves_a_rectangle_of_another_image():
    """Every pixel of the batch is unique, so each changed pixel says where it came from: with share 1
    every image holds one rectangle of another image, moved as one piece (one translation); share 0
    changes nothing; the same generator seed gives the same batch."""
    b, s = 4, 32
    x = torch.arange(b * s * s, dtype=torch.float32).view(b, 1, s, s).expand(b, 3, s, s).contiguous()
    assert torch.equal(cut_paste(x, 0.0, torch.Generator().manual_seed(0))[0], x)
    out, valid = cut_paste(x, 1.0, torch.Generator().manual_seed(0))
    assert valid is None  # no padding in, none out
    assert torch.equal(out, cut_paste(x, 1.0, torch.Generator().manual_seed(0))[0])
    for i in range(b):
        changed = (out[i] != x[i]).any(0).nonzero()  # (n, 2) rows, columns
        assert len(changed) > 0
        rows, cols = changed[:, 0], changed[:, 1]
        h, w = int(rows.max() - rows.min()) + 1, int(cols.max() - cols.min()) + 1
        assert len(changed) == h * w and 0.02 * s * s - s <= h * w <= 0.15 * s * s + s  # one filled rectangle
        src = out[i, 0, rows, cols].long()  # (n,) the flat index each pasted pixel came from
        image, row, col = src // (s * s), src // s % s, src % s
        assert (image != i).all() and len(image.unique()) == 1  # all from one other image
        assert len((row - rows).unique()) == 1 and len((col - cols).unique()) == 1  # one translation


def test_the_pasted_rectangle_carries_its_padding_mask_with_it():
    """With padding (``data.resize`` pad): the rectangle's part of the padding mask moves with it, the
    same rectangle as the pixels (each image's pixels equal its mask here), and the draws are those of
    the call without a mask, so a run with padding pastes the same rectangles."""
    b, s = 4, 32
    valid = torch.zeros(b, 1, s, s)
    for i in range(b):
        valid[i, :, :, : 8 * (i + 1)] = 1.0  # content on the left, padding on the right, each its own width
    x = valid.expand(b, 3, s, s).contiguous()  # (B, 3, S, S): white content, black padding
    out, out_valid = cut_paste(x, 1.0, torch.Generator().manual_seed(0), valid)
    assert torch.equal(out, cut_paste(x, 1.0, torch.Generator().manual_seed(0))[0])
    assert torch.equal(out_valid, out[:, :1])  # the mask moved exactly as the pixels did
    assert not torch.equal(out_valid, valid)  # and something moved
    assert torch.equal(valid[:, :, :, :8], torch.ones(b, 1, s, 8))  # the caller's mask is not written to


def test_distillation_sees_cut_pasted_images_only_when_asked(teacher_file, data, monkeypatch):
    import cavga.distill as distill_module

    calls = []
    monkeypatch.setattr(distill_module, "cut_paste", lambda x, share, g, v: calls.append(share) or (x, v))
    teacher = EfficientNetLite0Encoder(str(teacher_file), stride=16)
    loader = _loader(data)
    for share in (0.0, 0.5):
        cfg = DistillConfig(epochs=1, cutpaste=share)
        distill_encoder(DCGANEncoder(3, 8, 16), teacher, loader, cfg, torch.device("cpu"), progress=False)
    assert calls == [0.5] * len(loader)  # every batch of the second distillation, none of the first


def test_the_cosine_schedule_decays_the_rate_epoch_by_epoch(teacher_file, data, monkeypatch):
    """``distill.schedule: cosine``: every step of epoch e of E learns at lr (1 + cos(pi e / E)) / 2;
    ``constant``: at lr throughout."""
    import math

    seen = []
    step = torch.optim.Adam.step

    def recording_step(opt, *args, **kwargs):
        seen.append(opt.param_groups[0]["lr"])
        return step(opt, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", recording_step)
    teacher = EfficientNetLite0Encoder(str(teacher_file), stride=16)
    loader = _loader(data)
    per_epoch = len(loader)
    for schedule in ("cosine", "constant"):
        cfg = DistillConfig(epochs=4, lr=0.01, augment="none", cutpaste=0.0, schedule=schedule)
        distill_encoder(DCGANEncoder(3, 8, 16), teacher, loader, cfg, torch.device("cpu"), progress=False)
    cosine, constant = seen[: 4 * per_epoch], seen[4 * per_epoch :]
    by_hand = [0.01 * (1 + math.cos(math.pi * e / 4)) / 2 for e in range(4)]  # 0.01, 0.00854, 0.005, 0.00146
    assert cosine == pytest.approx([lr for lr in by_hand for _ in range(per_epoch)])
    assert constant == [0.01] * (4 * per_epoch)


def test_bf16_distils_both_networks_in_bf16_and_the_loss_in_float32(teacher_file, data, monkeypatch):
    """With the run's bf16 autocast (train.bf16) the teacher's and the encoder's forward passes run in
    bf16, the standardised targets and the loss in float32; without it everything is float32."""
    import cavga.distill as distill_module

    teacher = EfficientNetLite0Encoder(str(teacher_file), stride=16)
    loader, cfg = _loader(data), DistillConfig(epochs=1, augment="none", cutpaste=0.0)
    outputs, losses_in = [], []
    real_mse = distill_module.masked_mse
    monkeypatch.setattr(
        distill_module, "masked_mse", lambda p, t, w: losses_in.append((p.dtype, t.dtype)) or real_mse(p, t, w)
    )
    in_bf16 = lambda: torch.autocast("cpu", dtype=torch.bfloat16)  # noqa: E731 - the run's train.bf16 context
    for autocast, dtype in ((None, torch.float32), (in_bf16, torch.bfloat16)):
        outputs.clear(), losses_in.clear()
        encoder = DCGANEncoder(3, 8, 16)
        hooks = [
            m.register_forward_hook(lambda m, i, o: outputs.append(o.dtype)) for m in (teacher.body[2], encoder.body[1])
        ]
        kwargs = {} if autocast is None else {"autocast": autocast}
        losses = distill_encoder(encoder, teacher, loader, cfg, torch.device("cpu"), progress=False, **kwargs)
        for h in hooks:
            h.remove()
        # the statistics pass (float32 always), then both networks on every batch
        assert outputs[: len(loader)] == [torch.float32] * len(loader)
        assert set(outputs[len(loader) :]) == {dtype}
        assert set(losses_in) == {(torch.float32, torch.float32)} and all(map(math.isfinite, losses))


def test_the_distillation_schedule_is_checked_and_old_runs_read_constant():
    cfg = RunConfig()
    cfg.model.encoder_init, cfg.distill.schedule = "distill", "linear"
    with pytest.raises(CavgaError, match="distill.schedule: 'linear' is not one of constant, cosine"):
        cfg.validate()
    distilled = RunConfig()
    distilled.model.encoder_init = "distill"
    assert distilled.distill.schedule == "cosine"  # the default since session 39
    saved_before = to_dict(distilled)
    del saved_before["distill"]["schedule"]  # a distilled run saved before distill.schedule existed
    as_saved = from_dict(saved_before, "checkpoint.pt", saved=True)
    assert as_saved.distill.schedule == "constant"  # it was distilled at a constant rate, and keeps its identity
    assert config_fingerprint(to_dict(as_saved)) == config_fingerprint(saved_before)
    assert from_dict(saved_before).distill.schedule == "cosine"  # a user's config without the key: the default
    constant = RunConfig()
    constant.model.encoder_init, constant.distill.schedule = "distill", "constant"
    assert config_fingerprint(to_dict(constant)) != config_fingerprint(to_dict(distilled))


def test_restart_candidates_share_one_distillation_when_asked(teacher_file, data, tmp_path, monkeypatch):
    """distill.share: one distillation for all candidates, the first candidate's, which is then the same
    run as without sharing; the next candidate starts from that encoder instead of its own. The saved
    encoder is refused for a run it was not distilled for."""
    import cavga.distill as distill_module

    calls = []
    real = distill_module.distill_encoder

    def spy(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(distill_module, "distill_encoder", spy)
    common = ["--set", "model.encoder_init=distill", "--set", "model.freeze_encoder=true",
              "--set", f"distill.teacher_weights={teacher_file}", "--set", "distill.epochs=2",
              "--set", "train.restarts=2"]  # fmt: skip
    assert DistillConfig().share == "auto"  # true for CAVGA-u (tests/test_resolve.py)
    _train(data, tmp_path / "own", *common, "--set", "distill.share=false")
    assert len(calls) == 2
    _train(data, tmp_path / "shared", *common, "--set", "distill.share=true")
    assert len(calls) == 3  # one more: the first candidate's

    def candidate(run, seed):
        return load_checkpoint(candidate_dir(tmp_path / run, seed) / "checkpoint.pt")

    def encoder(state):
        return {k: v for k, v in state["model"].items() if k.startswith("encoder.")}

    assert same(candidate("shared", 0)["model"], candidate("own", 0)["model"])
    assert same(encoder(candidate("shared", 1)), encoder(candidate("shared", 0)))  # frozen: as distilled
    assert not same(encoder(candidate("shared", 1)), encoder(candidate("own", 1)))
    assert "shared by the restart candidates" in candidate("shared", 1)["backbone_weights"]

    saved = candidate_dir(tmp_path / "shared", 0).parent / SHARED_ENCODER
    cfg = from_dict(candidate("shared", 1)["config"], saved=True)
    with pytest.raises(CavgaError, match="distilled-encoder.pt: distilled for another configuration"):
        distilled_start(None, None, None, cfg, torch.device("cpu"), False, saved, {"split": "another"})


def test_the_feature_probe_reads_the_encoders_last_two_blocks_on_the_finer_grid():
    """benchmarks/encoder_features_probe.py: the stride-8 and stride-16 blocks of a stride-16
    encoder, each 3x3-averaged, the stride-16 one upsampled onto the stride-8 grid, concatenated."""
    import torch.nn.functional as F

    from _scripts import benchmark_script

    script = benchmark_script("encoder_features_probe")
    encoder = DCGANEncoder(3, 4, 16).eval()
    x = torch.rand(2, 3, 32, 32)
    f = script.EncoderPatches(encoder)(x)
    with torch.no_grad():
        h8 = encoder.body[:3](x)  # (2, 16, 4, 4)
        h16 = encoder.body[3](h8)  # (2, 32, 2, 2)
    assert f.shape == (2, 16 + 32, 4, 4)
    assert torch.allclose(f[:, :16], F.avg_pool2d(h8, 3, 1, 1, count_include_pad=False), atol=1e-6)
    up = F.interpolate(F.avg_pool2d(h16, 3, 1, 1, count_include_pad=False), size=(4, 4), mode="bilinear")
    assert torch.allclose(f[:, 16:], up, atol=1e-6)


@pytest.mark.parametrize("share", ["false", "true"])
def test_a_run_stopped_before_its_first_checkpoint_resumes_from_its_distilled_encoder(
    teacher_file, data, tmp_path, monkeypatch, capsys, share
):
    """Stopped after distilling but before its first checkpoint (Ctrl-C in the first step), a run keeps
    its distilled encoder (its own file, or the candidates' shared one) and --resume does not distil
    again; it ends identical to the uninterrupted run, as the file gives back the random state the
    distillation left. Its own file goes once the checkpoint holds the encoder."""
    import cavga.distill as distill_module
    import cavga.train as train_module

    calls, steps = [], []
    real_distill, real_step = distill_module.distill_encoder, train_module.train_step

    def distill_spy(*args, **kwargs):
        calls.append(1)
        return real_distill(*args, **kwargs)

    def stop_once(*args, **kwargs):
        steps.append(1)
        if len(steps) == 1:
            raise KeyboardInterrupt
        return real_step(*args, **kwargs)

    monkeypatch.setattr(distill_module, "distill_encoder", distill_spy)
    common = ["--set", "model.encoder_init=distill", "--set", "model.freeze_encoder=true",
              "--set", f"distill.teacher_weights={teacher_file}", "--set", "distill.epochs=2",
              "--set", "train.restarts=2", "--set", f"distill.share={share}"]  # fmt: skip
    whole = _train(data, tmp_path / "whole", *common)
    first = candidate_dir(tmp_path / "whole", 0)
    assert not (first / OWN_ENCODER).exists()  # gone once the checkpoint held the encoder
    calls.clear()

    monkeypatch.setattr(train_module, "train_step", stop_once)
    with pytest.raises(AssertionError):  # main returns 130 on the interrupt: _train asserts 0
        _train(data, tmp_path / "stopped", *common)
    assert "interrupted; --resume continues from the last saved epoch (or from the start" in capsys.readouterr().err
    stopped = candidate_dir(tmp_path / "stopped", 0)
    kept = stopped.parent / SHARED_ENCODER if share == "true" else stopped / OWN_ENCODER
    assert calls == [1] and kept.is_file() and not (stopped / "checkpoint.pt").exists()
    resumed = _train(data, tmp_path / "stopped", *common, "--resume")
    assert calls == ([1] if share == "true" else [1, 1])  # only the second candidate's own, if any
    for seed in (0, 1):
        a = load_checkpoint(candidate_dir(tmp_path / "whole", seed) / "checkpoint.pt")
        b = load_checkpoint(candidate_dir(tmp_path / "stopped", seed) / "checkpoint.pt")
        assert same(a["model"], b["model"]) and same(a["disc"], b["disc"])
    assert same(whole["model"], resumed["model"])


def test_an_unreadable_teacher_file_is_named_as_such(data, tmp_path, monkeypatch, capsys):
    """A corrupt Lite0 file, the package's own or the user's, is said to be unreadable (not that the
    package is missing), in one line without torch's advice to load it with weights_only=False."""
    import cavga.backbones as backbones
    import cavga.distill as distill_module

    garbage = tmp_path / "lite0.pth"
    garbage.write_bytes(bytes(range(256)) * 4)
    monkeypatch.setattr(backbones, "lite0_weights_path", lambda: garbage)
    monkeypatch.setattr(distill_module, "teacher_available", lambda weights: True)  # the package is installed
    args = ["train", "--data", str(data), "--layout", "mvtec", "--category", "brick", "--model", "Du",
            "--out", str(tmp_path / "run"), "--epochs", "1", "--image-size", "32", "--device", "cpu",
            "--no-progress", "--encoder-init", "distill"]  # fmt: skip
    for extra in ([], ["--set", f"distill.teacher_weights={garbage}"]):
        assert main(args + extra) != 0
        err = capsys.readouterr().err
        assert f"{garbage}: cannot read these weights (not a PyTorch weights file" in err, err
        assert "pip install" not in err and "weights_only" not in err and len(err.strip().splitlines()) == 1
