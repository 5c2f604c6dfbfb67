"""The score normaliser's map statistics and the demo's settings."""

import numpy as np
import pytest

from cavga.config import DEMO_SETTINGS, RunConfig
from cavga.demo import demo_config
from cavga.errors import CavgaError
from cavga.inference import Normalizer


def test_map_threshold_interpolates_the_held_out_quantiles():
    values = np.linspace(0.0, 0.5, 10_001)  # held-out normal pixels, uniform on [0, 0.5]
    quantiles = [float(v) for v in np.quantile(values, np.linspace(0.0, 1.0, 1001))]
    norm = Normalizer.fit(np.array([0.1, 0.2, 0.3]), 0.95, 1.0, quantiles)
    assert norm.map_threshold(0.99) == pytest.approx(0.495, abs=1e-6)
    assert norm.map_threshold(0.9995) == pytest.approx(0.49975, abs=1e-6)  # between two stored quantiles
    assert norm.with_quantile(0.5).map_quantiles == quantiles  # refitting the score keeps the map statistics
    with pytest.raises(CavgaError, match="retrain"):
        Normalizer.fit(np.array([0.1, 0.2]), 0.95, 1.0, []).map_threshold(0.99)


def test_demo_settings_apply_only_without_a_config(tmp_path):
    cfg = demo_config(tmp_path, "Du")
    assert cfg.data.image_size == DEMO_SETTINGS["data.image_size"] == 128
    assert cfg.model.latent_stride == 16 and cfg.loss.w_ae == 0.01 and cfg.infer.mask_quantile == 0.99
    assert cfg.data.root == str(tmp_path / "data") and cfg.data.category == "brick"
    own = demo_config(tmp_path, "Du", base=RunConfig())  # a user's --config: the paper's values stay
    assert own.loss.w_ae == 0.01 and own.data.image_size == 256 and own.infer.mask_quantile is None
    assert demo_config(tmp_path, "Du", epochs=3, image_size=32).train.epochs == 3
