"""The score normaliser's map statistics, the demo's settings and the direction of the anomaly map."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cavga import evidence
from cavga.attention import unsupervised_cam_raw
from cavga.config import DEMO_SETTINGS, ModelConfig, RunConfig
from cavga.demo import demo_config
from cavga.errors import CavgaError
from cavga.inference import Normalizer, Predictor
from cavga.networks import CAVGA


def test_map_threshold_interpolates_the_held_out_quantiles():
    values = np.linspace(0.0, 0.5, 10_001)  # held-out normal pixels, uniform on [0, 0.5]
    quantiles = [float(v) for v in np.quantile(values, np.linspace(0.0, 1.0, 1001))]
    norm = Normalizer.fit(np.array([0.1, 0.2, 0.3]), 0.95, 1.0, quantiles)
    assert norm.map_threshold(0.99) == pytest.approx(0.495, abs=1e-6)
    assert norm.map_threshold(0.9995) == pytest.approx(0.49975, abs=1e-6)  # between two stored quantiles
    assert norm.with_quantile(0.5, "conformal").map_quantiles == quantiles  # refitting keeps the map statistics
    norm.bce_scores, norm.map_max, norm.direction, norm.map_version = [0.4], [0.9], "direct", 2
    refit = norm.with_quantile(0.5, "interpolated")
    assert (refit.lo, refit.hi, refit.quantile, refit.rank) == (0.1, pytest.approx(0.2), 0.5, "interpolated")
    kept = {k: v for k, v in norm.to_dict().items() if k not in ("hi", "quantile", "rank")}
    assert {k: v for k, v in refit.to_dict().items() if k not in ("hi", "quantile", "rank")} == kept  # the rest kept
    with pytest.raises(CavgaError, match="retrain"):
        Normalizer.fit(np.array([0.1, 0.2]), 0.95, 1.0, []).map_threshold(0.99)


def test_demo_settings_apply_only_without_a_config(tmp_path):
    cfg = demo_config(tmp_path, "Du")
    assert cfg.data.image_size == DEMO_SETTINGS["data.image_size"] == 128
    assert cfg.model.latent_stride == 16 and cfg.infer.mask_quantile == "auto"
    assert cfg.loss.w_ae * 3 * 128 * 128 == pytest.approx(4000, rel=1e-3)  # per pixel term
    assert cfg.data.root == str(tmp_path / "data") and cfg.data.category == "brick"
    assert cfg.model.disc_channels == 16 and cfg.train.epochs == 15  # the faster demo (docs/performance.md)
    own = demo_config(tmp_path, "Du", base=RunConfig())  # a user's --config: the paper's values stay
    assert own.loss.w_ae == 0.01 and own.data.image_size == 256 and own.train.epochs == 100
    assert own.model.disc_channels is None
    assert demo_config(tmp_path, "Du", epochs=3, image_size=32).train.epochs == 3
    # CAVGA-Dw's demo adds candidates checked at epoch 5 (unstable from scratch); Du's and a --config's do not
    dw = demo_config(tmp_path, "Dw")
    assert (dw.train.restarts, dw.train.validate_every) == (3, 5) and dw.loss.w_ae == cfg.loss.w_ae
    assert (cfg.train.restarts, cfg.train.validate_every) == ("auto", "auto")
    assert demo_config(tmp_path, "Dw", base=RunConfig()).train.restarts == "auto"


class _Brightness(nn.Module):
    """Every channel is each 16x16 cell's mean brightness (or darkness), (B, K, S/16, S/16)."""

    def __init__(self, channels: int, dark: bool):
        super().__init__()
        self.channels, self.dark = channels, dark

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = F.avg_pool2d(x.mean(dim=1, keepdim=True), 16)  # (B, 1, S/16, S/16)
        return (1 - v if self.dark else v).expand(-1, self.channels, -1, -1).contiguous()


class _CellBrightness(nn.Module):
    """A known encoder of one block (the attention is taken at its output, layer 0)."""

    stride = 16

    def __init__(self, channels: int, dark: bool):
        super().__init__()
        self.out_channels = channels
        self.body = nn.Sequential(_Brightness(channels, dark))

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        return x


def _known_predictor(variant: str) -> Predictor:
    """A tiny CAVGA whose attention read-out is known: positive latent weights, so A grows with the
    encoder's features; for CAVGA-w the anomalous logit grows with the latent too."""
    torch.manual_seed(0)
    cfg = RunConfig()
    cfg.model = ModelConfig(variant=variant, base_channels=8, latent_channels=4)
    cfg.data.image_size, cfg.infer.mask_quantile = 64, None  # the map's direction, not the mask, is tested
    cfg.infer.classifier_verdict = "probability"  # no held-out probabilities here
    model = CAVGA(cfg.model, 64, allow_random_init=True)
    model.encoder = _CellBrightness(model.encoder.out_channels, dark=variant == "Dw")
    with torch.no_grad():
        for m in model.to_mu.modules():
            if getattr(m, "weight", None) is not None:
                m.weight.fill_(0.05)
                m.bias.zero_()
        if model.classifier is not None:
            model.classifier.weight.copy_(torch.tensor([-0.05, 0.05]).view(2, 1).expand_as(model.classifier.weight))
            model.classifier.bias.zero_()
    return Predictor(model, cfg, Normalizer.fit(np.array([0.1, 0.2]), 0.95, 1.0, []), torch.device("cpu"))


@pytest.mark.parametrize("variant", ["Du", "Dw"])
def test_a_planted_defect_comes_out_high_in_the_anomaly_map(variant):
    x = torch.full((2, 3, 64, 64), 0.9)  # (B, 3, S, S) plain bright surface
    x[1, :, 16:32, 16:32] = 0.0  # image 1: a dark defect filling one latent cell
    amap = _known_predictor(variant).predict_batch(x).anomaly_map  # (B, S, S)
    defect = amap[1, 20:28, 20:28].mean()
    elsewhere = amap[1, 48:, 48:].mean()
    # the blur (infer.map_blur, 4 px) spreads the one-cell defect a quarter cell into its neighbours,
    # which takes its centre from about 0.8 to 0.6; the complement 1 - (1 - A) would put it near 0
    assert defect > 0.5 and elsewhere < 0.3, (float(defect), float(elsewhere))
    if variant == "Du":  # (C's map of a plain image is flat, so per-image scaling lifts it to 1)
        assert defect > amap[0, 20:28, 20:28].mean() + 0.5  # higher than the same place without a defect


def test_the_direct_map_keeps_the_values_above_the_normal_peak_apart():
    model = _known_predictor("Du").model
    x = torch.full((1, 3, 64, 64), 0.9)  # (B, 3, S, S): bright cells...
    x[0, :, 16:32, 16:32] = 0.6  # ...one dimmer cell, still above the scale set below...
    x[0, :, 48:, 48:] = 0.0  # ...and a dark one
    with torch.enable_grad():
        features = model.encode_features(x).requires_grad_(True)  # (1, K, 4, 4)
        raw = unsupervised_cam_raw(model.latent(features), "mu_sum", create_graph=False)  # (1, 1, 4, 4)
    model.cam_scale.fill_(float(raw.detach().max()) / 2)  # the bright cells at s = 2, the dimmer one at s = 4/3
    s = raw / model.cam_scale  # (1, 1, 4, 4)
    direct = evidence.anomaly_evidence(model, x, "direct")[0]  # (1, 1, 4, 4)
    torch.testing.assert_close(direct, s / (1 + s))
    assert direct[0, 0, 0, 0] == pytest.approx(2 / 3, abs=1e-5) and direct[0, 0, 1, 1] == pytest.approx(4 / 7, abs=1e-5)
    assert direct[0, 0, 3, 3] == 0  # nothing drives the attention in the dark cell
    inverse = evidence.anomaly_evidence(model, x, "inverse")[0]  # 1 - A with A clamped at the scale
    assert inverse[0, 0, 0, 0] == inverse[0, 0, 1, 1] == 0 and inverse[0, 0, 3, 3] == 1


def test_the_direct_maps_mask_threshold_comes_from_its_own_held_out_statistics():
    inverse = _known_predictor("Du")
    quantiles = [float(v) for v in np.quantile(np.linspace(0.5, 1.0, 10_001), np.linspace(0.0, 1.0, 1001))]
    norm = Normalizer.fit(np.array([0.1, 0.2]), 0.95, 1.0, quantiles)  # held-out A uniform on [0.5, 1]
    norm.direction = "direct"
    cfg = inverse.cfg
    cfg.infer.attention_direction, cfg.infer.mask_quantile = "direct", 0.99
    assert Predictor(inverse.model, cfg, norm, torch.device("cpu")).mask_threshold == pytest.approx(0.995, abs=1e-6)


def test_classifier_verdict_is_calibrated_on_held_out_probabilities():
    raw = _known_predictor("Dw")
    held_out = [0.02, 0.04, 0.06, 0.08, 0.10]  # C's probabilities on held-out normals: all far below 0.5
    norm = Normalizer.fit(np.array([0.1, 0.2]), 0.95, 1.0, [], rank="interpolated")  # numpy's quantile, by hand below
    norm.classifier_scores = held_out
    cfg = raw.cfg
    x = torch.full((2, 3, 64, 64), 0.9)
    x[1, :, 16:32, 16:32] = 0.0
    p = raw.predict_batch(x).raw_score  # (B,)
    cfg.infer.classifier_verdict = "calibrated"
    calibrated = Predictor(raw.model, cfg, norm, torch.device("cpu")).predict_batch(x)
    lo, hi = 0.02, float(np.quantile(held_out, 0.95))  # by hand: 0.02 + 0.95 * 0.08 = 0.096
    assert hi == pytest.approx(0.096)
    expected = ((p - lo) / (2 * (hi - lo))).clamp(0, 1)
    assert torch.allclose(calibrated.score, expected, atol=1e-6) and torch.equal(calibrated.raw_score, p)
    assert torch.equal(calibrated.label, (expected >= 0.5).long())
    cfg.infer.classifier_verdict = "probability"  # the paper's literal verdict: C's own 0.5
    literal = Predictor(raw.model, cfg, norm, torch.device("cpu")).predict_batch(x)
    assert torch.equal(literal.score, p) and torch.equal(literal.label, (p >= 0.5).long())


@pytest.mark.parametrize("variant", ["Du", "Dw"])
def test_the_channels_last_layout_changes_no_result(variant, monkeypatch):
    """Prediction lays the batch out channels_last for speed: the same maps, scores and
    reconstructions as the plain NCHW layout, up to float rounding."""
    torch.manual_seed(0)
    cfg = RunConfig()
    cfg.model = ModelConfig(variant=variant, base_channels=8, latent_channels=4)
    cfg.data.image_size, cfg.infer.mask_quantile = 32, None
    cfg.infer.classifier_verdict = "probability"
    model = CAVGA(cfg.model, 32, allow_random_init=True)
    predictor = Predictor(model, cfg, Normalizer.fit(np.array([0.1, 0.2]), 0.95, 1.0, []), torch.device("cpu"))
    x = torch.rand(3, 3, 32, 32)  # (B, 3, S, S)
    assert evidence.MEMORY_FORMAT == torch.channels_last
    fast = predictor.predict_batch(x)
    monkeypatch.setattr(evidence, "MEMORY_FORMAT", torch.contiguous_format)
    plain = predictor.predict_batch(x)
    for name in ("anomaly_map", "score", "reconstruction", "residual_map"):
        torch.testing.assert_close(getattr(fast, name), getattr(plain, name), atol=1e-5, rtol=1e-5)
    assert fast.anomaly_map.std() > 0  # a map with content, not a constant that would match anyway
    assert all(p.is_contiguous() for p in model.parameters())  # the model itself is left as it was


def test_the_residual_baseline_is_blurred_as_the_map_since_map_version_3(tmp_path_factory):
    """The same-run residual |x - x_hat| goes through the map's blur: a run fitted now gives it
    blurred as scipy's gaussian_filter (mode mirror) blurs it, its held-out peak is of that blurred
    residual, its image score stays the unblurred mean; statistics of an older map version (fitted
    on the raw residual) keep it raw."""
    from scipy.ndimage import gaussian_filter

    from _tiny_run import shared_run
    from cavga.image_scores import MAP_VERSION, reconstruction_score
    from cavga.inference import eval_loader
    from cavga.runfolder import RunData

    run = shared_run(tmp_path_factory)
    predictor = Predictor.from_run(run, "cpu")
    assert predictor.normalizer.map_version == MAP_VERSION and predictor.residual_blur == 4.0
    batch = next(iter(eval_loader(RunData.load(run).test, predictor.cfg)))
    pred = predictor.predict_batch(batch.image)
    raw = reconstruction_score(batch.image, pred.reconstruction)[0]  # (B, S, S)
    by_hand = gaussian_filter(raw.double().numpy(), sigma=(0, 4, 4), mode="mirror", truncate=4.0)
    assert np.allclose(pred.residual_map.numpy(), by_hand, atol=1e-6) and not torch.allclose(pred.residual_map, raw)
    assert torch.allclose(pred.residual_score, raw.flatten(1).mean(dim=1), rtol=0, atol=1e-8)  # its score: unblurred
    held = [r for r in RunData.load(run).val if r.label == 0]
    peaks = [float(predictor.predict_batch(b.image).residual_map.max()) for b in eval_loader(held, predictor.cfg)]
    assert max(peaks) == pytest.approx(predictor.normalizer.residual_peak, rel=1e-5)
    predictor.normalizer.map_version = 2  # as a run fitted before the baselines were blurred
    assert predictor.residual_blur == 0.0 and torch.equal(predictor.predict_batch(batch.image).residual_map, raw)


def test_the_residual_mask_is_decided_on_painted_defects_as_the_maps_and_evaluate_uses_it(tmp_path_factory):
    """Training's end decides the same-run residual's mask level on the painted held-out normals: the
    best painted IoU of the map's candidates and the fixed rule (kept at ties); the predictor and
    evaluate use it; benchmarks/residual_mask.py makes the same decision again and repeats evaluate's
    residual with it; with the residual's statistics refitted (another blur), the fixed rule."""
    from _scripts import benchmark_script
    from _tiny_run import shared_run
    from cavga.image_scores import FIXED_RESIDUAL_LEVEL
    from cavga.io_utils import read_json
    from cavga.mask_threshold import FIXED_RESIDUAL_LABEL
    from cavga.runtime import CHECKPOINT, load_checkpoint

    run = shared_run(tmp_path_factory)
    decision = load_checkpoint(run / CHECKPOINT)["residual_mask"]
    sweep, chosen = decision["validation_iou"], decision["chosen"]
    assert sweep[chosen] == max(sweep.values()) and len(sweep) == 8 * 9 + 1  # quantiles x peak fractions, fixed
    assert chosen != FIXED_RESIDUAL_LABEL or sweep[FIXED_RESIDUAL_LABEL] >= max(sweep.values())
    predictor = Predictor.from_run(run, "cpu")
    assert predictor.residual_level == tuple(decision["residual_mask"])
    stored = read_json(run / "metrics.json", "", "metrics")
    assert stored["thresholds"]["residual_mask"] == list(predictor.residual_level)
    out = tmp_path_factory.mktemp("residual-mask") / "r.json"
    assert benchmark_script("residual_mask").main([str(run), "--out", str(out)]) == 0
    row = read_json(out, "", "diagnosis")["rows"][0]
    assert row["choice"]["residual_mask"] == decision["residual_mask"]
    for k in ("pixel_auroc", "aupro", "iou"):
        assert row["residual_painted"][k] == pytest.approx(stored["baseline_residual"][k], abs=1e-4)
        if k != "iou":  # the threshold moves the masks only
            assert row["residual_painted"][k] == row["residual_fixed"][k]
    assert Predictor.from_run(run, "cpu", ["infer.map_blur=0"]).residual_level == FIXED_RESIDUAL_LEVEL


def test_the_residual_blur_diagnosis_repeats_evaluates_blurred_residual_and_reads_the_maps_numbers(tmp_path_factory):
    """benchmarks/residual_blur.py: at the run's map blur its residual's threshold-free figures are
    evaluate's (which blurs the residual as the map since map version 3); the map's row is metrics.json's."""
    from _scripts import benchmark_script
    from _tiny_run import shared_run
    from cavga.io_utils import read_json

    run = shared_run(tmp_path_factory)
    out = tmp_path_factory.mktemp("residual-blur") / "r.json"
    assert benchmark_script("residual_blur").main([str(run), "--out", str(out)]) == 0
    row = read_json(out, "", "diagnosis")["rows"][0]
    stored = read_json(run / "metrics.json", "", "metrics")
    blurred = row[f"residual_sigma{row['map_blur']:g}"]
    assert row["map_blur"] > 0 and blurred != row["residual_sigma0"]
    for k in ("pixel_auroc", "aupro"):
        assert blurred[k] == pytest.approx(stored["baseline_residual"][k], abs=1e-3)
        assert row["map"][k] == stored["metrics"][k]


def test_the_residual_baseline_masks_at_a_given_threshold_raised_towards_each_maps_peak():
    """residual_baseline(threshold=t, fraction=r) masks each map at t + r (peak - t), by hand on one
    anomalous image; the default is evaluate's fixed rule, the map at 0.5."""
    from types import SimpleNamespace

    from cavga.evaluate import residual_baseline

    amap = np.array([[0.9, 0.7, 0.4, 0.1]], dtype=np.float32)  # (1, 4): peak 0.9
    truth = np.array([[True, True, False, False]])
    normal = np.zeros((1, 4), dtype=np.float32)
    args = (SimpleNamespace(normalizer=None), np.array([0.1, 0.5]), np.array([0, 1]), [normal, amap])
    masks = [np.zeros((1, 4), dtype=bool), truth]

    def at(*how):
        return residual_baseline(*args, masks, np.array([True, True]), *how)["iou"]

    assert at() == pytest.approx(2 / 2)  # >= 0.5: the two defect pixels
    assert at(0.3) == pytest.approx(2 / 3)  # >= 0.3: three pixels, two of them right
    assert at(0.3, 0.5) == pytest.approx(2 / 2)  # >= 0.3 + 0.5 (0.9 - 0.3) = 0.6: the defect again
    assert at(0.3, 0.8) == pytest.approx(1 / 2)  # >= 0.78: the peak pixel alone


def test_the_residual_baselines_ranking_reads_its_maps_unclipped_and_its_masks_clipped():
    """Residual pixels above the held-out peak (above 1 in its units) keep their order for the
    threshold-free metrics, as the attention's direct map does; the masks, whose threshold was decided
    on the maps clipped at 1, are those of the clipped maps (a peak fraction would otherwise move)."""
    from types import SimpleNamespace

    from cavga.evaluate import residual_baseline

    maps = [np.array([[3.0, 1.5], [0.1, 0.1]], np.float32), np.full((2, 2), 0.2, np.float32)]  # anomalous, normal
    masks = [np.array([[1, 0], [0, 0]], bool), np.zeros((2, 2), bool)]
    predictor, real = SimpleNamespace(normalizer=None, cfg=None), np.array([True, True])
    m = residual_baseline(predictor, np.array([0.9, 0.1]), np.array([1, 0]), maps, masks, real, 0.5, 0.5)
    assert m["pixel_auroc"] == 1.0  # clipped at 1, the defect's 3.0 would tie with the 1.5 beside it
    assert m["iou"] == 0.5  # clipped: peak 1, level 0.5 + 0.5 * 0.5 = 0.75, both top pixels; unclipped: one
