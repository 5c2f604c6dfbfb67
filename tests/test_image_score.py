"""infer.image_score: map scores an image by its anomaly map's peak, normalised on held-out normals."""

import numpy as np
import pytest
import torch

from _tiny_run import exported_and_eager, shared_run
from cavga.data import load_image
from cavga.errors import CavgaError
from cavga.inference import Normalizer, Predictor, fit_normalizer
from cavga.runfolder import RunData
from cavga.runtime import CHECKPOINT, load_checkpoint, save_checkpoint


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return shared_run(tmp_path_factory, "Du")


def _images(run, records):
    return torch.stack([load_image(r.image_path, 32) for r in records])  # (B, 3, S, S)


def test_the_map_score_is_the_maps_peak_normalised_on_held_out_peaks(run):
    paper = Predictor.from_run(run, "cpu")
    peak = Predictor.from_run(run, "cpu", ["infer.image_score=map"])
    split = RunData.load(run)
    x = _images(run, split.test)
    p, q = paper.predict_batch(x), peak.predict_batch(x)
    assert torch.equal(p.anomaly_map, q.anomaly_map)  # the map does not change, only the score
    torch.testing.assert_close(q.raw_score, q.anomaly_map.flatten(1).amax(dim=1))
    held = peak.predict_batch(_images(run, [r for r in split.val if r.label == 0])).raw_score.numpy()
    lo, hi = held.min(), np.quantile(held, peak.cfg.infer.normalizer_quantile)  # by hand
    expected = np.clip((q.raw_score.numpy() - lo) / (2 * max(hi - lo, 1e-12)), 0, 1)
    np.testing.assert_allclose(q.score.numpy(), expected, atol=1e-5)
    assert peak.score_normalizer is peak.map_normalizer and paper.map_normalizer is None


def test_direct_maps_are_normalised_on_the_peaks_of_a(run):
    direct = Predictor.from_run(run, "cpu", ["infer.image_score=map", "infer.attention_direction=direct"])
    held = [r for r in RunData.load(run).val if r.label == 0]
    raw = direct.predict_batch(_images(run, held)).raw_score.numpy()  # the peaks of A on the held-out normals
    assert direct.map_normalizer.lo == pytest.approx(float(raw.min()), abs=1e-5)
    assert direct.normalizer.direction == "direct"  # the run stored 1 - A's statistics; A's were fitted


def test_a_run_without_stored_peaks_gets_them_from_its_held_out_normals(run, tmp_path):
    import shutil

    old = tmp_path / "old"
    shutil.copytree(run, old)
    state = load_checkpoint(old / CHECKPOINT)
    stored = (state["normalizer"]["map_max"], state["normalizer"]["map_min"])
    del state["normalizer"]["map_max"], state["normalizer"]["map_min"]  # as cavga wrote it before
    save_checkpoint(state, old / CHECKPOINT)
    predictor = Predictor.from_run(old, "cpu", ["infer.image_score=map"])
    np.testing.assert_allclose(predictor.normalizer.map_max, stored[0], atol=1e-6)
    np.testing.assert_allclose(predictor.normalizer.map_min, stored[1], atol=1e-6)
    with pytest.raises(CavgaError, match="held-out map peaks"):
        Predictor(
            predictor.model, predictor.cfg, Normalizer(0.0, 1.0, 0.95, 1, 1.0, [0.0], [0.0, 1.0]), torch.device("cpu")
        )


def test_the_exported_graph_scores_by_the_peak_too(run, tmp_path):
    got, ref = exported_and_eager(run, tmp_path, ["infer.image_score=map"])
    torch.testing.assert_close(got.raw_score, ref.raw_score, atol=1e-4, rtol=0)
    torch.testing.assert_close(got.score, ref.score, atol=1e-4, rtol=0)


def test_fit_normalizer_stores_each_held_out_images_peak_and_floor(run):
    predictor = Predictor.from_run(run, "cpu")
    held = [r for r in RunData.load(run).val if r.label == 0]
    norm = fit_normalizer(predictor.model, held, predictor.cfg, torch.device("cpu"))
    maps = predictor.predict_batch(_images(run, held)).anomaly_map  # 1 - A as stored
    np.testing.assert_allclose(norm["map_max"], maps.flatten(1).amax(dim=1).numpy(), atol=1e-6)
    np.testing.assert_allclose(norm["map_min"], maps.flatten(1).amin(dim=1).numpy(), atol=1e-6)
