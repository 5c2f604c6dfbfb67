"""The training protocol: the min-max game of G and D (cavga.step: train_step, make_optimizers) and the data split."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from cavga.config import ModelConfig, RunConfig
from cavga.losses import adversarial_d_loss
from cavga.networks import build_networks
from cavga.runfolder import prepare_data
from cavga.step import make_optimizers, train_step


def _tiny(seed: int = 0):
    torch.manual_seed(seed)
    cfg = RunConfig()
    cfg.model = ModelConfig(variant="Du", base_channels=8, latent_channels=8)
    cfg.data.image_size = 32
    model, disc = build_networks(cfg.model, 32, allow_random_init=True)
    x = torch.rand(4, 3, 32, 32)  # (B, 3, S, S)
    return cfg, model, disc, x, torch.zeros(4, dtype=torch.long)


def _snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.named_parameters()}


def _changed(module: torch.nn.Module, before: dict[str, torch.Tensor]) -> list[str]:
    return [k for k, v in module.named_parameters() if not torch.equal(v, before[k])]


def _ids(opt: torch.optim.Optimizer) -> set[int]:
    return {id(p) for group in opt.param_groups for p in group["params"]}


def test_generator_optimiser_holds_no_discriminator_parameter():
    cfg, model, disc, _, _ = _tiny()
    opt_g, opt_d = make_optimizers(model, disc, cfg)
    disc_ids = {id(p) for p in disc.parameters()}
    assert opt_g is not opt_d
    assert not _ids(opt_g) & disc_ids
    assert _ids(opt_d) == disc_ids
    assert _ids(opt_g) >= {id(p) for p in model.parameters() if p.requires_grad}


def test_discriminator_changes_only_in_its_own_step():
    cfg, model, disc, x, labels = _tiny()
    opt_g, opt_d = make_optimizers(model, disc, cfg)
    idle_d = torch.optim.SGD(disc.parameters(), lr=0.0)  # D's own step moves nothing
    d0, g0 = _snapshot(disc), _snapshot(model)
    losses = train_step(model, disc, opt_g, idle_d, x, labels, cfg)
    assert losses["adv"] > 0  # G's loss went through D, so D's parameters got gradients ...
    assert _changed(disc, d0) == []  # ... yet G's step left them alone
    assert _changed(model, g0)  # while G moved
    train_step(model, disc, opt_g, opt_d, x, labels, cfg)
    assert _changed(disc, d0)  # D moves in D's step


def test_discriminator_step_lowers_its_loss_on_a_fixed_batch():
    cfg, model, disc, x, labels = _tiny(1)
    model.eval()  # z = mu: the reconstructions stay fixed
    _, opt_d = make_optimizers(model, disc, cfg)
    idle_g = torch.optim.SGD(model.parameters(), lr=0.0)
    with torch.no_grad():
        x_hat = model.decode(model.encode(x).mu)  # (B, 3, S, S)

    def d_loss() -> float:
        with torch.no_grad():
            return float(adversarial_d_loss(disc(x), disc(x_hat)))

    before = d_loss()
    for _ in range(3):
        train_step(model, disc, idle_g, opt_d, x, labels, cfg)
    assert d_loss() < before - 1e-3


# --- one test set for CAVGA-u and CAVGA-w ----------------------------------------------------------


def _mvtec(root, n_train: int = 10, n_good: int = 3, n_bad: int = 20):
    base = root / "widget"
    for folder, n, value in (("train/good", n_train, 100), ("test/good", n_good, 110), ("test/crack", n_bad, 50)):
        (base / folder).mkdir(parents=True)
        for i in range(n):
            Image.new("L", (8, 8), value + i).save(base / folder / f"{i:03d}.png")
    (base / "ground_truth/crack").mkdir(parents=True)
    for i in range(n_bad):
        Image.fromarray(np.full((8, 8), 255, np.uint8)).save(base / "ground_truth/crack" / f"{i:03d}_mask.png")
    return root


@pytest.mark.parametrize("fraction", [0.02, 0.2])
def test_u_and_w_are_tested_on_the_same_images_and_both_hold_out_normals(tmp_path, fraction):
    root = _mvtec(tmp_path)
    runs = {}
    for variant in ("Du", "Dw"):
        cfg = RunConfig()
        cfg.data.root, cfg.data.category, cfg.model.variant = str(root), "widget", variant
        cfg.data.anomalous_fraction, cfg.data.val_fraction = fraction, 0.2
        runs[variant] = prepare_data(cfg)
    u, w = runs["Du"], runs["Dw"]
    paths = lambda recs: [r.image_path for r in recs]  # noqa: E731
    moved = {r.image_path for r in w.train if r.label == 1}
    assert len(moved) == max(1, round(fraction * 20))
    assert paths(u.test) == paths(w.test)  # the same reduced test set (the paper's Table 2)
    assert not moved & set(paths(u.test) + paths(u.train) + paths(u.val))
    assert sorted(u.info["shared_test_set"]["removed"]) == sorted(moved)
    assert u.info["n_test"] == w.info["n_test"] == 23 - len(moved)
    # both fit the normaliser and the mask quantile on the same held-out normals, never trained on
    assert len(w.val) == len(u.val) == 2 and paths(w.val) == paths(u.val)
    for run in (u, w):
        assert all(r.label == 0 for r in run.val) and not set(paths(run.val)) & set(paths(run.train))
