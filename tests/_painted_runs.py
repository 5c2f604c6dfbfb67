"""Tiny runs with the painted check scripted, shared by the epoch-choice and restarts tests."""

from pathlib import Path

import torch

from cavga import epoch_choice
from cavga.config import RunConfig
from cavga.demo_data import generate_demo_dataset


def small_data(root: Path) -> Path:
    generate_demo_dataset(root, seed=0, n_train=16, n_test_good=2, n_test_defect=2, crop=48)
    return root


def tiny_config(root, epochs, every=0, val_fraction=0.25, seed=0, restarts=1, patience=0) -> RunConfig:
    """A 32 px run of ``epochs`` checked every ``every`` epochs (stopping after ``patience`` checks
    without the best; 0: never), on ``small_data``."""
    cfg = RunConfig()
    cfg.data.root, cfg.data.category, cfg.data.image_size, cfg.data.val_fraction = str(root), "brick", 32, val_fraction
    cfg.model.base_channels = cfg.model.latent_channels = 8
    cfg.train.epochs, cfg.train.batch_size, cfg.train.device, cfg.train.validate_every = epochs, 4, "cpu", every
    cfg.train.seed, cfg.train.restarts, cfg.train.patience = seed, restarts, patience
    return cfg


def scripted(monkeypatch, scores) -> None:
    """The painted check answers ``scores`` in turn (one per check): a pixel AUROC (the BCE's image
    AUROC then 1.0, never guarded) or a pair (pixel AUROC, BCE image AUROC)."""
    answers = iter(s if isinstance(s, tuple) else (s, 1.0) for s in scores)
    monkeypatch.setattr(epoch_choice, "epoch_check", lambda *a: next(answers))


def same(a, b) -> bool:
    """Two state dicts hold the same tensors."""
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
