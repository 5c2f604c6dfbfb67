"""infer.image_score: map scores an image by its anomaly map's peak, bce by Eq. 1's reconstruction
term, each normalised on held-out normals' own values."""

import numpy as np
import pytest
import torch

from _by_hand import conformal_by_hand
from _scripts import benchmark_script
from _tiny_run import exported_and_eager, shared_run
from cavga.config import NORMALIZER_RANKS, RunConfig, from_dict, to_dict
from cavga.data import load_image
from cavga.errors import CavgaError
from cavga.image_scores import Normalizer, bce_score, held_out_quantile, peak_mask
from cavga.inference import Predictor, fit_normalizer
from cavga.runfolder import RunData
from cavga.runtime import CHECKPOINT, load_checkpoint, save_checkpoint


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return shared_run(tmp_path_factory, "Du")


def _images(run, records):
    return torch.stack([load_image(r.image_path, 32) for r in records])  # (B, 3, S, S)


def _against_paper(run, score):
    """The run's predictor with image score ``score``, its test split, images and predictions,
    checked against the paper's score: the map and mask stay, only the score and its normaliser change."""
    paper = Predictor.from_run(run, "cpu", ["infer.image_score=paper"])
    other = Predictor.from_run(run, "cpu", [f"infer.image_score={score}"])
    split = RunData.load(run)
    x = _images(run, split.test)
    p, q = paper.predict_batch(x), other.predict_batch(x)
    assert torch.equal(p.anomaly_map, q.anomaly_map) and torch.equal(p.mask, q.mask)
    assert other.score_normalizer is other.image_score_normalizer and paper.image_score_normalizer is None
    return other, split, x, q


def _normalised_by_hand(raw, held, quantile):
    lo, hi = held.min(), conformal_by_hand(held, quantile)  # infer.normalizer_rank: conformal
    return np.clip((raw - lo) / (2 * max(hi - lo, 1e-12)), 0, 1)


def test_the_map_score_is_the_maps_peak_normalised_on_held_out_peaks(run):
    peak, split, _, q = _against_paper(run, "map")
    torch.testing.assert_close(q.raw_score, q.anomaly_map.flatten(1).amax(dim=1))
    held = peak.predict_batch(_images(run, [r for r in split.val if r.label == 0])).raw_score.numpy()
    expected = _normalised_by_hand(q.raw_score.numpy(), held, peak.cfg.infer.normalizer_quantile)
    np.testing.assert_allclose(q.score.numpy(), expected, atol=1e-5)


def test_direct_maps_are_normalised_on_the_peaks_of_a(run):
    direct = Predictor.from_run(run, "cpu", ["infer.image_score=map", "infer.attention_direction=direct"])
    held = [r for r in RunData.load(run).val if r.label == 0]
    raw = direct.predict_batch(_images(run, held)).raw_score.numpy()  # the peaks of A on the held-out normals
    assert direct.image_score_normalizer.lo == pytest.approx(float(raw.min()), abs=1e-5)
    assert direct.normalizer.direction == "direct"  # the run stored 1 - A's statistics; A's were fitted


def _bce_by_hand(x, x_hat):
    """(B,): x log(x / x_hat) + (1 - x) log((1 - x) / (1 - x_hat)), the Bernoulli KL divergence (x_hat
    clamped to [1e-6, 1 - 1e-6], 0 log 0 = 0), averaged per image."""
    xh = x_hat.double().clamp(1e-6, 1 - 1e-6)
    x = x.double()
    kl = torch.xlogy(x, x) - x * xh.log() + torch.xlogy(1 - x, 1 - x) - (1 - x) * (1 - xh).log()
    return kl.flatten(1).mean(dim=1)


@pytest.mark.parametrize(
    "keys, score, message",
    [(("map_max", "map_min"), "map", "held-out map peaks"), (("bce_scores",), "bce", "held-out reconstruction BCEs")],
)
def test_a_run_without_stored_held_out_values_gets_them_from_its_held_out_normals(run, tmp_path, keys, score, message):
    import shutil

    old = tmp_path / "old"
    shutil.copytree(run, old)
    state = load_checkpoint(old / CHECKPOINT)
    stored = [state["normalizer"].pop(k) for k in keys]  # as cavga wrote it before
    assert all(len(v) == len(stored[0]) > 0 for v in stored)
    save_checkpoint(state, old / CHECKPOINT)
    predictor = Predictor.from_run(old, "cpu", [f"infer.image_score={score}"])
    for k, v in zip(keys, stored, strict=True):
        np.testing.assert_allclose(getattr(predictor.normalizer, k), v, atol=1e-6)
    with pytest.raises(CavgaError, match=message):
        Predictor(
            predictor.model, predictor.cfg, Normalizer(0.0, 1.0, 0.95, 1, 1.0, [0.0], [0.0, 1.0]), torch.device("cpu")
        )


def test_the_bce_score_is_eq1s_term_above_its_floor_normalised_on_held_out_bces(run):
    bce, split, x, q = _against_paper(run, "bce")
    np.testing.assert_allclose(q.raw_score.numpy(), _bce_by_hand(x, q.reconstruction).numpy(), rtol=1e-5)
    held = _images(run, [r for r in split.val if r.label == 0])
    held_raw = _bce_by_hand(held, bce.predict_batch(held).reconstruction).numpy()
    np.testing.assert_allclose(bce.normalizer.bce_scores, held_raw, rtol=1e-5)
    # normalised by hand on the stored values just checked (the held-out BCEs span little, so the
    # float32 rounding of the raw values would dominate a comparison against the float64 ones)
    stored = np.asarray(bce.normalizer.bce_scores)
    expected = _normalised_by_hand(q.raw_score.numpy(), stored, bce.cfg.infer.normalizer_quantile)
    np.testing.assert_allclose(q.score.numpy(), expected, atol=1e-5)


def test_the_bce_score_is_zero_for_a_perfect_reconstruction_however_grey():
    x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    x[1] = 0.5  # the greyest image: the largest BCE floor, log 2 a pixel
    np.testing.assert_allclose(bce_score(x, x.clone()).numpy(), [0.0, 0.0], atol=1e-6)
    x_hat = 0.8 * x + 0.1
    np.testing.assert_allclose(bce_score(x, x_hat).numpy(), _bce_by_hand(x, x_hat).numpy(), rtol=1e-4)


def test_the_bce_score_of_a_padded_image_is_its_contents_mean():
    x = torch.full((2, 3, 4, 4), 0.5)
    x_hat = torch.full((2, 3, 4, 4), 0.6)
    x_hat[:, :, :, 2:] = 0.999  # badly reconstructed padding (columns 2-3)
    valid = torch.zeros(2, 1, 4, 4)
    valid[:, :, :, :2] = 1.0
    expected = 0.5 * np.log(0.5 / 0.6) + 0.5 * np.log(0.5 / 0.4)  # Bernoulli KL on the content
    np.testing.assert_allclose(bce_score(x, x_hat, valid).numpy(), [expected, expected], rtol=1e-5)
    assert (bce_score(x, x_hat) > expected + 0.1).all()  # the padding, counted, would raise it


def test_baselines_have_no_bce_score():
    cfg = RunConfig()
    cfg.model.variant, cfg.infer.image_score = "AE-L2", "bce"
    with pytest.raises(CavgaError, match="bce is for the CAVGA variants"):
        cfg.validate()


@pytest.mark.parametrize("score, fmt", [("map", "torchscript"), ("bce", "torchscript"), ("bce", "onnx")])
def test_the_exported_graph_scores_by_the_peak_and_the_bce_too(run, tmp_path, score, fmt):
    if fmt == "onnx":
        pytest.importorskip("onnxruntime")
    got, ref = exported_and_eager(run, tmp_path, [f"infer.image_score={score}"], fmt)
    torch.testing.assert_close(got.raw_score, ref.raw_score, atol=1e-4, rtol=0)
    norm = Predictor.from_run(run, "cpu", [f"infer.image_score={score}"]).score_normalizer
    stretch = max(1.0, 1.0 / (2 * max(norm.hi - norm.lo, 1e-12)))  # the normaliser magnifies raw differences
    torch.testing.assert_close(got.score, ref.score, atol=1e-4 * stretch, rtol=0)


def test_fit_normalizer_stores_each_held_out_images_peak_and_floor(run):
    predictor = Predictor.from_run(run, "cpu")
    held = [r for r in RunData.load(run).val if r.label == 0]
    norm = fit_normalizer(predictor.model, held, predictor.cfg, torch.device("cpu"))
    maps = predictor.predict_batch(_images(run, held)).anomaly_map  # 1 - A as stored
    np.testing.assert_allclose(norm["map_max"], maps.flatten(1).amax(dim=1).numpy(), atol=1e-6)
    np.testing.assert_allclose(norm["map_min"], maps.flatten(1).amin(dim=1).numpy(), atol=1e-6)


def test_each_cavga_only_score_has_its_held_out_values_and_its_own_score_kind():
    from cavga.config import CAVGA_IMAGE_SCORES, IMAGE_SCORES
    from cavga.evaluate import score_kind
    from cavga.image_scores import OWN_HELD_OUT

    assert set(OWN_HELD_OUT) == set(CAVGA_IMAGE_SCORES) <= set(IMAGE_SCORES)
    assert all(key in Normalizer.__dataclass_fields__ for key, _ in OWN_HELD_OUT.values())
    kinds = set()
    for score in ("paper", *CAVGA_IMAGE_SCORES):
        cfg = RunConfig()
        cfg.infer.image_score = score
        kinds.add(score_kind(cfg))
    assert len(kinds) == 1 + len(CAVGA_IMAGE_SCORES)  # each score is recorded under its own name


def test_peak_mask_raises_each_maps_threshold_towards_its_own_peak():
    """t + r * max(peak - t, 0), by hand: t = 0.2, r = 0.5. A map peaking at 1.0 keeps what is at
    least 0.6, one peaking at 0.5 what is at least 0.35; one that stays below t keeps nothing, as at r = 0."""
    maps = torch.zeros(3, 4, 4)  # (B, S, S)
    maps[0, 0, :4] = torch.tensor([1.0, 0.6, 0.59, 0.3])
    maps[1, 0, :2] = torch.tensor([0.19, 0.18])  # below t: never raised, never flagged
    maps[2, 0, :3] = torch.tensor([0.5, 0.45, 0.3])  # peak 0.5: level 0.35
    got = peak_mask(maps, 0.2, 0.5)
    want = torch.zeros(3, 4, 4, dtype=torch.bool)
    want[0, 0, :2] = True
    want[2, 0, :2] = True
    assert torch.equal(got, want)
    assert torch.equal(peak_mask(maps, 0.2, 0.0), maps >= 0.2)  # r = 0: the plain threshold
    for i in range(3):  # one map at its own size (an array) gives the same mask
        assert np.array_equal(peak_mask(maps[i].numpy(), 0.2, 0.5), want[i].numpy())
    valid = torch.zeros(3, 1, 4, 4)  # (B, 1, S, S): the last column is padding
    valid[..., :3] = 1
    padded = maps.clone()
    padded[0, 3, 3] = 5.0  # a high value in the padding does not raise the level
    assert torch.equal(peak_mask(padded, 0.2, 0.5, valid)[0, 0], want[0, 0])


def test_peak_mask_keeps_ties_at_the_quantile_out_in_float32():
    """A map that is 0 on most normal pixels has its quantile at 0 and t the float32 just above it.
    A map that is 0 everywhere must keep an empty mask: t + r (0 - t) would round to 0 in float32
    and flag every pixel."""
    t = float(np.nextafter(np.float32(0), np.float32(1)))  # as Predictor.threshold_at_quantile gives it
    zero = np.zeros((8, 8), dtype=np.float32)
    assert not peak_mask(zero, t, 0.5).any() and not peak_mask(torch.from_numpy(zero)[None], t, 0.5).any()


@pytest.mark.parametrize("n, k", [(21, 21), (40, 39), (59, 57), (100, 96), (5, 5)])
def test_the_conformal_quantile_is_the_held_out_score_of_rank_ceil_n_plus_1_q(n, k):
    scores = np.random.default_rng(n).permutation(np.arange(1.0, n + 1))  # the k-th smallest is k
    assert held_out_quantile(scores, 0.95, "conformal") == k == conformal_by_hand(scores, 0.95)
    assert held_out_quantile(scores, 0.95, "interpolated") == pytest.approx(np.quantile(scores, 0.95))
    norm = Normalizer.fit(scores, 0.95, 1.0, [], rank="conformal")
    assert (norm.hi, norm.rank) == (k, "conformal")


def test_the_conformal_quantile_keeps_unseen_normals_false_alarms_within_the_budget():
    """21 held-out normal scores and one unseen, 20 000 times: how often the unseen one reaches the
    threshold fitted on the 21 (1/22 = 4.5% for the conformal rank; near 9% for numpy's)."""
    draws = np.random.default_rng(0).normal(size=(20_000, 22))
    held, unseen = draws[:, :21], draws[:, 21]
    rate = {
        rank: float(np.mean([u >= held_out_quantile(h, 0.95, rank) for h, u in zip(held, unseen, strict=True)]))
        for rank in NORMALIZER_RANKS
    }
    assert rate["conformal"] == pytest.approx(1 / 22, abs=0.005)  # within 1 - 0.95
    assert rate["interpolated"] > 0.07  # the budget of 5% broken


def test_the_normalizer_rank_is_an_inference_setting_and_older_runs_read_interpolated(run):
    default = Predictor.from_run(run, "cpu", ["infer.image_score=paper"])
    assert default.cfg.infer.normalizer_rank == "conformal" and default.normalizer.rank == "conformal"
    held = np.asarray(default.normalizer.scores)
    assert default.normalizer.hi == pytest.approx(conformal_by_hand(held, 0.95))
    numpy_rank = Predictor.from_run(run, "cpu", ["infer.image_score=paper", "infer.normalizer_rank=interpolated"])
    assert numpy_rank.normalizer.hi == pytest.approx(np.quantile(held, 0.95))
    before = to_dict(default.cfg)
    del before["infer"]["normalizer_rank"]
    assert from_dict(before, saved=True).infer.normalizer_rank == "interpolated"  # saved before the key existed
    stored = {k: v for k, v in default.normalizer.to_dict().items() if k != "rank"}
    assert Normalizer(**stored).rank == "interpolated"  # a checkpoint's normaliser from before it
    cfg = RunConfig()
    cfg.infer.normalizer_rank = "exact"
    with pytest.raises(CavgaError, match="infer.normalizer_rank: 'exact' is not one of conformal, interpolated"):
        cfg.validate()


def test_the_false_alarm_benchmark_leaves_each_held_out_score_out_in_turn():
    loo = benchmark_script("false_alarms").leave_one_out
    held = np.arange(1.0, 22.0)  # 21 held-out scores
    # conformal: the other 20's largest (rank ceil(21 * 0.95) = 20), so only the largest score reaches it
    assert [i + 1 for i, hit in enumerate(loo(held, "conformal")) if hit] == [21]
    # interpolated: between the other 20's two largest, 21 - 20 and 20 - 19.1 (of 19 and 21) are reached
    assert [i + 1 for i, hit in enumerate(loo(held, "interpolated")) if hit] == [20, 21]
