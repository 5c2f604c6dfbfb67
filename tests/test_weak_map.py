"""infer.weak_map: CAVGA-w's map is A_ca (the paper's) or 1 - A_cn, decided on painted held-out defects."""

import shutil

import numpy as np
import pytest
import torch

from _tiny_run import exported_and_eager, shared_run
from cavga.config import ModelConfig, RunConfig
from cavga.data import load_image
from cavga.evidence import anomaly_evidence
from cavga.image_scores import MAP_VERSION
from cavga.inference import Predictor, fit_normalizer
from cavga.networks import CAVGA
from cavga.runfolder import RunData
from cavga.runtime import CHECKPOINT, load_checkpoint, save_checkpoint
from cavga.validation import validate_run


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return shared_run(tmp_path_factory, "Dw")


def _x(run, records):
    return torch.stack([load_image(r.image_path, 32) for r in records])  # (B, 3, S, S)


def _reference_cam(model, x, cls: int) -> torch.Tensor:
    """Grad-CAM of C's logit ``cls`` by hand: alpha_k = mean_ij dy/dF_kij, ReLU(sum_k alpha_k F_k), scaled:
    clamped to [0, 1] for A_cn, s / (1 + s) for A_ca (unclamped above the normal peak)."""
    features = model.encode_features(x).detach().requires_grad_(True)  # (B, K, h, w)
    logits = model.classify(model.latent(features).mu)  # (B, 2)
    (grads,) = torch.autograd.grad(logits[:, cls].sum(), features)  # each image's own gradient
    cam = torch.relu((grads.mean(dim=(2, 3), keepdim=True) * features).sum(dim=1, keepdim=True))
    s = (cam / (model.attention_scale() + 1e-8)).detach()  # (B, 1, h, w)
    return s / (1 + s) if cls == 1 else s.clamp(0, 1)


def test_each_weak_map_is_its_classes_grad_cam(run):
    model = Predictor.from_run(run, "cpu").model
    x = _x(run, RunData.load(run).test)
    a_ca = anomaly_evidence(model, x, weak_map="anomalous")[0]
    normal = anomaly_evidence(model, x, weak_map="normal")[0]
    torch.testing.assert_close(a_ca, _reference_cam(model, x, 1), atol=1e-5, rtol=0)
    torch.testing.assert_close(normal, 1 - _reference_cam(model, x, 0), atol=1e-5, rtol=0)
    assert not torch.allclose(a_ca, normal)


def test_training_keeps_the_map_that_validates_better_and_fits_its_statistics(run, tmp_path):
    state = load_checkpoint(run / CHECKPOINT)
    chosen = state["weak_map"]
    by_map = chosen["validation_pixel_auroc"]
    assert chosen["weak_map"] == ("normal" if by_map["normal"] > by_map["anomalous"] else "anomalous")
    assert state["normalizer"]["weak_map"] == chosen["weak_map"]  # mask quantiles and peaks of that map
    assert Predictor.from_run(run, "cpu").cfg.infer.weak_map == chosen["weak_map"]
    shutil.copytree(run, tmp_path / "run")  # validate writes into the run folder: not the shared one
    assert validate_run(tmp_path / "run", device="cpu")["weak_map"] == chosen["weak_map"]  # reported as used


@pytest.mark.parametrize("weak_map", ["anomalous", "normal"])
def test_a_weak_map_setting_gets_that_maps_statistics(run, weak_map):
    predictor = Predictor.from_run(run, "cpu", [f"infer.weak_map={weak_map}"])
    assert predictor.normalizer.weak_map == weak_map
    cfg: RunConfig = predictor.cfg
    held = [r for r in RunData.load(run).val if r.label == 0]
    fresh = fit_normalizer(predictor.model, held, cfg, torch.device("cpu"))
    np.testing.assert_allclose(predictor.normalizer.map_quantiles, fresh["map_quantiles"], atol=1e-6)
    maps = predictor.predict_batch(_x(run, held)).anomaly_map
    np.testing.assert_allclose(predictor.normalizer.map_max, maps.flatten(1).amax(dim=1).numpy(), atol=1e-6)


@pytest.mark.parametrize("weak_map", ["anomalous", "normal"])
def test_the_exported_graph_draws_the_same_weak_map(run, tmp_path, weak_map):
    local = tmp_path / "run"
    shutil.copytree(run, local)
    got, ref = exported_and_eager(local, tmp_path, [f"infer.weak_map={weak_map}"])
    torch.testing.assert_close(got.anomaly_map, ref.anomaly_map, atol=1e-4, rtol=0)
    torch.testing.assert_close(got.raw_score, ref.raw_score, atol=1e-4, rtol=0)


def test_statistics_of_the_clamped_a_ca_are_refitted(run, tmp_path):
    predictor = Predictor.from_run(run, "cpu", ["infer.weak_map=anomalous"])  # A_ca's statistics, of this cavga
    old = tmp_path / "old"  # as written before A_ca was read unclamped: same map, no map_version
    shutil.copytree(run, old)
    state = load_checkpoint(old / CHECKPOINT)
    state["normalizer"].update(weak_map="anomalous", map_quantiles=[0.0] * 1001)  # stale values
    del state["normalizer"]["map_version"]
    save_checkpoint(state, old / CHECKPOINT)
    refitted = Predictor.from_run(old, "cpu", ["infer.weak_map=anomalous"]).normalizer
    assert refitted.map_version == MAP_VERSION
    np.testing.assert_allclose(refitted.map_quantiles, predictor.normalizer.map_quantiles, atol=1e-6)
    inverse = Predictor.from_run(old, "cpu", ["infer.weak_map=normal"]).normalizer  # 1 - A_cn did not change
    assert inverse.weak_map == "normal"


def test_the_weak_map_probe_scores_the_maps_training_compared(run, capsys):
    """benchmarks/weak_map_probe.py: A_ca and 1 - A_cn score as training's decision scored them on the
    same painted set; the latent Grad-CAM read both ways ranks pixels in exactly opposite orders."""
    from _scripts import benchmark_script

    got = benchmark_script("weak_map_probe").probe(run)
    by_map = load_checkpoint(run / CHECKPOINT)["weak_map"]["validation_pixel_auroc"]
    assert got["anomalous"] == pytest.approx(by_map["anomalous"], abs=2e-4)
    assert got["normal"] == pytest.approx(by_map["normal"], abs=2e-4)
    assert got["latent_direct"] + got["latent_inverse"] == pytest.approx(1.0, abs=2e-4)


@pytest.mark.parametrize("layer", [0, 1])
def test_class_map_weights_are_one_alpha_for_every_image_at_the_last_map_and_per_image_earlier(layer):
    """C is linear in z and mu a 1x1 convolution of the last map, so at attention_layer 0 Grad-CAM's alpha
    of C's logit is the same for every image (a CAM read-out); a layer earlier, a strided convolution,
    batch norm and LeakyReLU lie between F and z, and alpha is each image's own."""
    torch.manual_seed(0)
    model = CAVGA(ModelConfig(variant="Dw", base_channels=8, latent_channels=8, attention_layer=layer), 32).eval()
    features = model.encode_features(torch.rand(4, 3, 32, 32)).detach().requires_grad_(True)  # (B, K, h, w)
    logits = model.classify(model.latent(features).mu)  # (B, 2)
    (grads,) = torch.autograd.grad(logits[:, 1].sum(), features)
    alphas = grads.mean(dim=(2, 3))  # (B, K)
    spread = (alphas - alphas[:1]).abs().max() / alphas.abs().max()
    assert spread < 1e-5 if layer == 0 else spread > 1e-2
