"""``train.deterministic``: deterministic kernels while a run trains, torch's settings restored after."""

from __future__ import annotations

import torch

import cavga.train
from _tiny_run import make_data
from cavga.cli import main
from cavga.runtime import deterministic_kernels


def test_deterministic_kernels_switch_on_for_the_block_and_restore_after():
    cudnn = torch.backends.cudnn
    assert not torch.are_deterministic_algorithms_enabled()
    before = (cudnn.benchmark, cudnn.deterministic)
    with deterministic_kernels():
        assert torch.are_deterministic_algorithms_enabled() and torch.is_deterministic_algorithms_warn_only_enabled()
        assert cudnn.deterministic and not cudnn.benchmark
    assert not torch.are_deterministic_algorithms_enabled() and (cudnn.benchmark, cudnn.deterministic) == before
    with deterministic_kernels(False):
        assert not torch.are_deterministic_algorithms_enabled()


def test_train_runs_under_deterministic_kernels_when_asked(tmp_path, monkeypatch):
    seen = []
    seed = cavga.train.seed_everything
    monkeypatch.setattr(
        cavga.train, "seed_everything", lambda s: (seen.append(torch.are_deterministic_algorithms_enabled()), seed(s))
    )
    data = make_data(tmp_path / "data")
    args = [
        "train", "--data", str(data), "--layout", "mvtec", "--category", "brick", "--model", "Du",
        "--epochs", "1", "--image-size", "32", "--batch-size", "4", "--device", "cpu", "--no-progress",
        "--set", "model.base_channels=8", "--set", "model.latent_channels=8",
    ]  # fmt: skip
    assert main([*args, "--out", str(tmp_path / "a"), "--set", "train.deterministic=true"]) == 0
    assert main([*args, "--out", str(tmp_path / "b")]) == 0
    assert seen == [True, False]  # on while the first run trained, and only then
    assert not torch.are_deterministic_algorithms_enabled()
    assert "deterministic: true" in (tmp_path / "a" / "config.yaml").read_text()
