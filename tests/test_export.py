"""`cavga export`: the closed-form Grad-CAM against autograd, and exported files against the checkpoint."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from _tiny_run import exported_and_eager
from cavga.attention import grad_cam_raw, unsupervised_cam_raw
from cavga.cli import main
from cavga.config import ModelConfig
from cavga.data import load_image
from cavga.demo_data import generate_demo_dataset
from cavga.errors import CavgaError
from cavga.export import FORMATS, AnalyticGradCAM, ExportedPredictor, export_run
from cavga.export.analytic import score_kind
from cavga.inference import Predictor
from cavga.networks import build_networks
from cavga.normal_level import LEVEL_KEY
from cavga.runfolder import RunData
from cavga.runtime import CHECKPOINT, load_checkpoint, save_checkpoint

pytest.importorskip("onnxruntime")


def _model(seed: int = 0, **kw):
    torch.manual_seed(seed)
    cfg = ModelConfig(base_channels=8, latent_channels=6, backbone_weights="none", **kw)
    model, _ = build_networks(cfg, 64, allow_random_init=True)
    return model.eval()


def _autograd_cam(model, x):
    features = model.encode_features(x).detach().requires_grad_(True)  # (B, K, h, w)
    enc = model.latent(features)
    if model.cfg.weakly_supervised:
        return features, enc.mu, grad_cam_raw(features, model.classify(enc.mu)[:, 1], create_graph=False)
    return features, enc.mu, unsupervised_cam_raw(enc, model.cfg.attention_score, create_graph=False)


CASES = [
    dict(variant="Du", attention_score="mu_sum"),
    dict(variant="Du", attention_score="z_sum"),
    dict(variant="Du", attention_score="mu_energy"),
    dict(variant="Du", attention_score="per_channel"),
    dict(variant="Dw"),
    dict(variant="Ru", attention_score="mu_energy", encoder_stride=16),
    dict(variant="Ru", attention_score="mu_sum", flat_latent=True, flat_latent_dim=5),
    dict(variant="Ru", attention_score="mu_energy", flat_latent=True, flat_latent_dim=5),
    dict(variant="Ru", attention_score="per_channel", flat_latent=True, flat_latent_dim=5),
    dict(variant="Rw", flat_latent=True, flat_latent_dim=5, seed=1),  # seed 0: A_ca is 0 everywhere
    # Grad-CAM below z: the gradient back through DCGAN's, ResNet-18's and EfficientNet-Lite0's blocks
    dict(variant="Du", attention_score="mu_energy", attention_layer=1),
    dict(variant="Dw", attention_layer=2, seed=2),
    dict(variant="Ru", attention_score="mu_energy", encoder_stride=16, attention_layer=1),  # a downsampling block
    dict(variant="Ru", attention_score="mu_sum", flat_latent=True, flat_latent_dim=5, attention_layer=3),
    dict(variant="Rw", backbone="efficientnet_lite0", encoder_stride=16, attention_layer=1, seed=1),
    dict(variant="Ru", backbone="efficientnet_lite0", encoder_stride=16, attention_score="mu_sum", attention_layer=2),
]


@pytest.mark.parametrize("kw", CASES, ids=lambda kw: "-".join(str(v) for v in kw.values()))
def test_analytic_grad_cam_equals_autograd(kw):
    model = _model(**kw)
    x = torch.rand(3, 3, 64, 64)  # (B, 3, S, S)
    features, mu, ref = _autograd_cam(model, x)
    with torch.no_grad():
        got, got_mu = AnalyticGradCAM(model, score_kind(model))(features.detach())  # (B, 1, h, w)
    assert got.shape == ref.shape and float(ref.detach().amax()) > 0
    torch.testing.assert_close(got_mu, mu.detach())
    peak = ref.detach().amax()  # randomly initialised Lite0 maps can peak near 1e-7: compare relative to it
    torch.testing.assert_close(got / peak, ref / peak, atol=1e-5, rtol=1e-5)


def test_per_channel_attention_below_the_last_map_refuses_to_export_in_one_line():
    model = _model(variant="Du", attention_layer=1, attention_score="per_channel")
    with pytest.raises(CavgaError, match=r"attention_layer 1 with attention_score per_channel") as e:
        AnalyticGradCAM(model, "per_channel")
    assert "\n" not in str(e.value)


def test_a_block_without_a_transpose_rule_refuses_to_export_in_one_line():
    model = _model(variant="Ru", encoder_stride=8, attention_layer=3)  # ResNet-18 to layer2: from its max pool
    with pytest.raises(CavgaError, match=r"through a MaxPool2d block") as e:
        AnalyticGradCAM(model, "mu_energy")
    assert "\n" not in str(e.value)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    generate_demo_dataset(root, seed=0, n_train=12, n_test_good=3, n_test_defect=5, crop=48)
    out = {}
    for name, model, extra in (
        ("Du", "Du", []),
        ("Du-energy", "Du", ["--set", "model.attention_score=mu_energy"]),  # an image-dependent closed form
        ("Dw", "Dw", []),
        ("Du-layer1", "Du", ["--set", "model.attention_layer=1"]),  # Grad-CAM one encoder block below z
    ):
        run = tmp_path_factory.mktemp(f"run_{name}")
        args = [
            "train", "--data", str(root), "--layout", "mvtec", "--category", "brick", "--model", model,
            "--out", str(run), "--epochs", "1", "--image-size", "32", "--batch-size", "4", "--device", "cpu",
            "--no-progress", "--set", "model.base_channels=8", "--set", "model.latent_channels=8",
            "--set", "data.anomalous_fraction=0.4", "--set", "data.val_fraction=0.4",  # 4-5 held-out normals
        ]  # fmt: skip
        assert main(args + extra) == 0
        out[name] = run
    return out


@pytest.mark.parametrize("model", ["Du", "Du-energy", "Dw"])
@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_exported_model_matches_the_checkpoint(runs, tmp_path, model, fmt):
    run = runs[model]
    path = export_run(run, tmp_path / f"m{FORMATS[fmt]}", fmt)
    exported, eager = ExportedPredictor(path), Predictor.from_run(run, "cpu")
    assert exported.meta["image_size"] == 32 and exported.meta["variant"] == f"CAVGA-{model[:2]}"
    assert exported.mask_threshold == eager.mask_threshold
    norm = eager.score_normalizer  # CAVGA-u's normaliser, CAVGA-w's calibration of C's probability
    assert exported.meta["normalizer"]["hi"] == norm.hi
    split = RunData.load(run)
    # the test images, and the held-out normals the normaliser was fitted on (scores inside (0, 1))
    x = torch.stack([load_image(r.image_path, 32) for r in split.test + split.val])  # (B, 3, S, S)
    got, ref = exported.predict_batch(x), eager.predict_batch(x)
    assert ((ref.score > 0.01) & (ref.score < 0.99)).any()  # some scores unclamped: the normaliser counts
    torch.testing.assert_close(got.raw_score, ref.raw_score, atol=1e-4, rtol=0)
    # the normaliser stretches raw differences by 1 / (2 (hi - lo)): after one epoch CAVGA-w's held-out
    # probabilities can lie within a few thousandths of each other
    stretch = max(1.0, 1.0 / (2 * max(norm.hi - norm.lo, 1e-12)))
    torch.testing.assert_close(got.score, ref.score, atol=1e-4 * stretch, rtol=0)
    torch.testing.assert_close(got.anomaly_map, ref.anomaly_map, atol=1e-4, rtol=0)
    if model != "Du":  # (mu_sum's A can still be 0 everywhere after one epoch on 10 images)
        assert float(ref.anomaly_map.std()) > 0  # a map with structure, not a constant
    # verdicts agree wherever the score is clear of the threshold: the held-out normal at the normaliser's
    # rank scores 0.5 itself, where float noise (0.49999994) may flip it
    decided = (ref.score - eager.cfg.infer.score_threshold).abs() > 1e-4 * stretch
    assert decided.sum() >= len(x) - 1 and torch.equal(got.label[decided], ref.label[decided])
    # masks agree wherever the map is clear of the threshold (within 1e-4 of it, float noise may flip a pixel)
    clear = (ref.anomaly_map - eager.mask_threshold).abs() > 1e-4
    assert torch.equal(got.mask[clear], ref.mask[clear])


# each map option of the export graph: the option as asked, and the same run without it
MAP_OPTIONS = {
    "enlarged-and-shifted": (["infer.enlarged_map=true", "infer.shifted_map=true"], ["infer.enlarged_map=false"]),
    "blurred": (["infer.map_blur=3"], ["infer.map_blur=0"]),
    # A's departure from its stored normal level, read over half-cell shifts (the level a buffer of the graph)
    "two-sided": (["infer.attention_direction=two_sided", "infer.shifted_map=true"], ["infer.shifted_map=true"]),
}


@pytest.mark.parametrize("option", list(MAP_OPTIONS))
@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_the_exported_graph_reads_the_map_as_the_predictor_does_with_each_map_option(runs, tmp_path, fmt, option):
    """The enlarged image's map with its shifts (infer.enlarged_map, shifted_map), and the blur (infer.map_blur)."""
    on, off = MAP_OPTIONS[option]
    direct = "infer.attention_direction=direct"  # A itself, unclamped: after one epoch 1 - A is nearly flat
    low = _low_peak_copy(runs["Du-energy"], tmp_path, [direct])
    got, ref = exported_and_eager(low, tmp_path, [direct, *on], fmt)
    without = exported_and_eager(low, tmp_path / "without", [direct, *off], fmt)[1]
    assert (ref.anomaly_map - without.anomaly_map).abs().max() > 1e-3  # another map, by ten times the tolerance
    torch.testing.assert_close(got.anomaly_map, ref.anomaly_map, atol=1e-4, rtol=0)
    torch.testing.assert_close(got.raw_score, ref.raw_score, atol=1e-4, rtol=0)


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_the_exported_graph_raises_each_mask_towards_its_maps_peak(runs, tmp_path, fmt):
    infer = ["infer.mask_quantile=0.5", "infer.mask_peak_fraction=0.5"]  # Dw's maps spread above that quantile
    got, ref = exported_and_eager(runs["Dw"], tmp_path, infer, fmt)
    t = Predictor.from_run(runs["Dw"], "cpu", infer).mask_threshold
    a = ref.anomaly_map  # (B, S, S)
    level = t + 0.5 * (a.flatten(1).amax(dim=1) - t)  # (B,) each image's own level
    # infer.mask_gate verdict (the default): only anomalous verdicts carry a mask, in the graph too
    assert torch.equal(ref.mask, (a >= level[:, None, None]) & (ref.label > 0)[:, None, None])
    assert ((a >= level[:, None, None]) & (ref.label == 0)[:, None, None]).any()  # the gate emptied a mask
    clear = (a - level[:, None, None]).abs() > 1e-4  # float noise may flip a pixel at the level
    assert ((a >= t) & ~ref.mask & clear).sum() > 100  # raised: pixels the plain threshold keeps are left out
    assert torch.equal(got.mask[clear], ref.mask[clear])


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_grad_cam_below_z_exports_and_matches_the_checkpoint(runs, tmp_path, fmt):
    """model.attention_layer 1: the gradient back through a DCGAN block (conv, batch norm, LeakyReLU)."""
    direct = "infer.attention_direction=direct"  # A read directly, its running peak lowered: a map with structure
    low = _low_peak_copy(runs["Du-layer1"], tmp_path, [direct])
    got, ref = exported_and_eager(low, tmp_path, [direct], fmt)
    assert float(ref.anomaly_map.std()) > 1e-2
    torch.testing.assert_close(got.anomaly_map, ref.anomaly_map, atol=1e-4, rtol=0)
    torch.testing.assert_close(got.raw_score, ref.raw_score, atol=1e-4, rtol=0)


def _low_peak_copy(run: Path, tmp_path: Path, infer: list[str]) -> Path:
    """A copy of ``run`` with its running peak at the median of its test maps read directly (``infer``):
    half of A lies above it, where a one-epoch run's A is otherwise all near 0."""
    a = exported_and_eager(run, tmp_path, infer)[1].anomaly_map  # (B, S, S) = s / (1 + s)
    low = tmp_path / "low"
    shutil.copytree(run, low)
    state = load_checkpoint(low / CHECKPOINT)
    factor = float((a / (1 - a)).median())  # s = A / (1 - A)
    state["model"]["cam_scale"] *= factor
    if LEVEL_KEY in state:  # CAVGA-u's normal level is in the running peak's units too
        state[LEVEL_KEY] = state[LEVEL_KEY] / factor
    save_checkpoint(state, low / CHECKPOINT)
    return low


@pytest.mark.parametrize(
    ("model", "setting"), [("Du-energy", "attention_direction=direct"), ("Dw", "weak_map=anomalous")]
)
def test_the_exported_graph_reads_a_and_a_ca_unclamped_too(runs, tmp_path, model, setting):
    infer = [f"infer.{setting}"]
    got, ref = exported_and_eager(_low_peak_copy(runs[model], tmp_path, infer), tmp_path, infer)
    above = ref.anomaly_map[ref.anomaly_map > 0.5]  # s > 1
    assert above.unique().numel() > 100  # all apart, where the clamp would tie them at 1
    torch.testing.assert_close(got.anomaly_map, ref.anomaly_map, atol=1e-4, rtol=0)


def test_predict_runs_on_an_exported_model_as_on_the_run(runs, tmp_path):
    run = runs["Du"]
    images = [r.image_path for r in RunData.load(run).test][:4]
    model = tmp_path / "model.onnx"
    assert main(["export", str(run), "--out", str(model)]) == 0  # the format from the extension
    assert main(["predict", str(run), *images, "--out", str(tmp_path / "a"), "--device", "cpu"]) == 0
    assert main(["predict", str(model), *images, "--out", str(tmp_path / "b"), "--device", "cpu"]) == 0
    a = json.loads((tmp_path / "a" / "predictions.json").read_text())
    b = json.loads((tmp_path / "b" / "predictions.json").read_text())
    assert a["mask_threshold"] == b["mask_threshold"] and len(a["predictions"]) == len(b["predictions"]) == 4
    for ra, rb in zip(a["predictions"], b["predictions"], strict=True):
        assert ra.keys() == rb.keys()
        assert ra["verdict"] == rb["verdict"] and ra["overlay"] == rb["overlay"]
        assert ra["score"] == pytest.approx(rb["score"], abs=1e-4)
        assert ra["anomalous_area"] == pytest.approx(rb["anomalous_area"], abs=1e-3)


def test_exported_models_refuse_changed_settings_and_foreign_files(runs, tmp_path, capsys):
    model = export_run(runs["Dw"], tmp_path / "m.pt")
    img = RunData.load(runs["Dw"]).test[0].image_path
    assert main(["predict", str(model), img, "--out", str(tmp_path / "o"), "--set", "infer.mask_threshold=0.3"]) == 2
    assert "settings are fixed" in capsys.readouterr().err
    plain = tmp_path / "plain.pt"
    torch.jit.save(torch.jit.script(torch.nn.Identity()), str(plain))
    with pytest.raises(CavgaError, match="no cavga metadata"):
        ExportedPredictor(plain)
    with pytest.raises(CavgaError, match="cannot tell the format"):
        export_run(runs["Dw"], tmp_path / "m.bin")
    # predict tells the format by the extension: a name that says another one is refused before any work
    for out, fmt in (("m2.onnx", "torchscript"), ("m2", "onnx"), ("m2.pt", "onnx")):
        with pytest.raises(CavgaError, match="must end in"):
            export_run(runs["Dw"], tmp_path / out, fmt)
    (tmp_path / "folder.pt").mkdir()
    with pytest.raises(CavgaError, match="is a folder"):
        export_run(runs["Dw"], tmp_path / "folder.pt")


def _tampered(model: Path, out: Path, edit) -> Path:
    """A copy of the TorchScript ``model`` whose metadata ``edit`` (a function of the dict) has changed."""
    extra = {"cavga.json": ""}
    module = torch.jit.load(str(model), _extra_files=extra)
    meta = json.loads(extra["cavga.json"])
    edit(meta)
    torch.jit.save(module, str(out), _extra_files={"cavga.json": json.dumps(meta)})
    return out


# metadata edits, each with the words its one-line refusal names
TAMPERED = {
    "threshold-word": (lambda m: m.update(mask_threshold="x"), ["mask_threshold", "'x'"]),
    "threshold-null": (lambda m: m.update(mask_threshold=None), ["mask_threshold", "None"]),
    "peak-word": (lambda m: m.update(mask_peak_fraction="x"), ["mask_peak_fraction"]),
    "area-word": (lambda m: m.update(mask_min_area="x"), ["mask_min_area"]),
    "area-whole": (lambda m: m.update(mask_min_area=5.0), ["mask_min_area", "[0, 1)"]),
    "area-negative": (lambda m: m.update(mask_min_area=-1), ["mask_min_area", "[0, 1)"]),
    "gate-word": (lambda m: m.update(mask_gate="x"), ["mask_gate"]),
    "size-word": (lambda m: m.update(image_size="x"), ["image_size", "'x'"]),
    "config-size-33": (lambda m: m["config"]["data"].update(image_size=33), ["data.image_size", "power of two"]),
}


@pytest.mark.filterwarnings(r"ignore:`torch\.jit\.\w+` is deprecated:FutureWarning")
def test_tampered_metadata_and_graphs_are_refused_in_one_line(runs, tmp_path, capsys):
    """Each metadata field of an exported file is checked for its type and range (the config's checks),
    and a graph of another size or output count is refused, in one line naming the file and the field."""
    from _errors import one_line_error

    model = export_run(runs["Du"], tmp_path / "m.pt")
    img = RunData.load(runs["Du"]).test[0].image_path
    for name, (edit, words) in TAMPERED.items():
        bad = _tampered(model, tmp_path / f"{name}.pt", edit)
        assert main(["predict", str(bad), img, "--out", str(tmp_path / name), "--device", "cpu"]) == 2, name
        one_line_error(capsys, bad, "(metadata)", *words)

    class TwoOutputs(torch.nn.Module):
        def forward(self, x):
            return x.mean((1, 2, 3)), x[:, 0]

    two = tmp_path / "two.pt"
    extra = {"cavga.json": ""}
    torch.jit.load(str(model), _extra_files=extra)
    torch.jit.save(torch.jit.script(TwoOutputs()), str(two), _extra_files=extra)
    assert main(["predict", str(two), img, "--out", str(tmp_path / "two"), "--device", "cpu"]) == 2
    one_line_error(capsys, two, "returns 2 output(s), not the 4")

    # both image sizes changed: TorchScript's input size is told by its answer, ONNX's read from the file
    def to_64(meta):
        meta["image_size"] = meta["config"]["data"]["image_size"] = 64

    bad = _tampered(model, tmp_path / "s64.pt", to_64)
    assert main(["predict", str(bad), img, "--out", str(tmp_path / "s64"), "--device", "cpu"]) == 2
    one_line_error(capsys, bad, "(1, 64, 64)", "image_size 64 is not the graph's")
    import onnx

    proto = onnx.load(str(export_run(runs["Du"], tmp_path / "m.onnx")))
    meta = json.loads(proto.metadata_props[0].value)
    to_64(meta)
    proto.metadata_props[0].value = json.dumps(meta)
    onnx.save(proto, str(tmp_path / "s64.onnx"))
    with pytest.raises(CavgaError, match=r"s64.onnx \(metadata\): data.image_size: 64 is not the size the graph takes"):
        ExportedPredictor(tmp_path / "s64.onnx")
