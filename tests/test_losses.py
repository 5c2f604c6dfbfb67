import copy
import math

import pytest
import torch
import torch.nn.functional as F

from cavga.attention import grad_cam_raw
from cavga.config import RunConfig
from cavga.losses import (
    adversarial_d_loss,
    adversarial_g_loss,
    attention_expansion_loss,
    classifier_loss,
    complementary_guided_attention_loss,
    kl_loss,
    reconstruction_loss,
)
from cavga.networks import build_networks
from cavga.step import generator_loss


def test_reconstruction_loss_sums_pixels_and_averages_images():
    x = torch.tensor([[0.0, 1.0], [1.0, 1.0]])
    x_hat = torch.tensor([[0.25, 0.5], [0.5, 0.5]])
    expected = ((-math.log(0.75) - math.log(0.5)) + (-2 * math.log(0.5))) / 2
    assert math.isclose(float(reconstruction_loss(x, x_hat)), expected, rel_tol=1e-6)


def test_kl_loss_hand_values():
    zeros = torch.zeros(2, 3, 2, 2)
    assert float(kl_loss(zeros, zeros)) == 0.0
    # mu = 1, logvar = 0: KL per element = 0.5 * mu^2 = 0.5; 3 elements per image
    assert math.isclose(float(kl_loss(torch.ones(2, 3), torch.zeros(2, 3))), 1.5, rel_tol=1e-6)
    # mu = 0, logvar = log 2: 0.5 * (2 - 1 - log 2) per element, 4 elements
    lv = torch.full((1, 4), math.log(2.0))
    assert math.isclose(float(kl_loss(torch.zeros(1, 4), lv)), 2 * (1 - math.log(2.0)), rel_tol=1e-6)


def test_adversarial_losses_match_eq2():
    d_real, d_fake = torch.tensor([0.3, -1.0]), torch.tensor([0.2, 2.0])
    p_real, p_fake = torch.sigmoid(d_real), torch.sigmoid(d_fake)
    expected_d = -(torch.log(p_real) + torch.log(1 - p_fake)).mean()
    assert torch.allclose(adversarial_d_loss(d_real, d_fake), expected_d, atol=1e-6)
    assert torch.allclose(adversarial_g_loss(d_fake), -torch.log(p_fake).mean(), atol=1e-6)


def test_attention_expansion_loss_eq3():
    a = torch.tensor([[[[1.0, 0.0], [0.5, 0.5]]], [[[1.0, 1.0], [1.0, 1.0]]]])  # (2, 1, 2, 2)
    # image 1: mean(1 - A) = 0.5; image 2: 0 -> mean over images 0.25
    assert math.isclose(float(attention_expansion_loss(a)), 0.25)


def test_classifier_loss_is_bce_of_anomalous_probability():
    logits = torch.tensor([[2.0, -1.0], [0.5, 1.5], [0.0, 0.0]])
    labels = torch.tensor([0, 1, 1])
    p = torch.softmax(logits, dim=1)[:, 1]
    expected = F.binary_cross_entropy(p, labels.float())
    assert torch.allclose(classifier_loss(logits, labels), expected, atol=1e-6)


def test_cga_only_counts_correctly_classified_normal_images():
    a_n = torch.tensor([0.2, 0.4, 0.6, 0.8]).view(4, 1, 1, 1).expand(4, 1, 2, 2)
    a_a = torch.tensor([0.1, 0.3, 0.5, 0.7]).view(4, 1, 1, 1).expand(4, 1, 2, 2)
    logits = torch.tensor([[3.0, 0.0], [0.0, 3.0], [3.0, 0.0], [0.0, 3.0]])  # predicted n, a, n, a
    labels = torch.tensor([0, 0, 1, 1])  # normal ok, normal missed, anomalous missed, anomalous ok
    # only image 0 counts: 1 - 0.2 + 0.1 = 0.9; averaged over the 4 images
    assert math.isclose(float(complementary_guided_attention_loss(a_n, a_a, logits, labels)), 0.9 / 4, rel_tol=1e-6)
    # misclassified or anomalous only: exactly zero
    zero = complementary_guided_attention_loss(a_n[1:], a_a[1:], logits[1:], labels[1:])
    assert float(zero) == 0.0


def test_mean_reduction_averages_elements():
    x = torch.tensor([[0.0, 1.0], [1.0, 1.0]])
    x_hat = torch.tensor([[0.25, 0.5], [0.5, 0.5]])
    expected = ((-math.log(0.75) - math.log(0.5)) / 2 + (-math.log(0.5))) / 2
    assert math.isclose(float(reconstruction_loss(x, x_hat, "mean")), expected, rel_tol=1e-6)
    assert math.isclose(float(kl_loss(torch.ones(2, 3), torch.zeros(2, 3), "mean")), 0.5, rel_tol=1e-6)


@pytest.mark.parametrize("per_pixel, reduction", [(True, "sum"), (False, "sum"), (True, "mean")])
def test_eq4_total_weights_l_ae_per_reconstruction_term(per_pixel, reduction):
    cfg = RunConfig()
    cfg.model.base_channels = cfg.model.latent_channels = 8
    cfg.loss.per_pixel_weights, cfg.loss.reduction, cfg.loss.w_ae = per_pixel, reduction, 0.01
    torch.manual_seed(0)
    model, disc = build_networks(cfg.model, 32)
    x = torch.rand(2, 3, 32, 32)
    enc = model.encode(x)
    total, t = generator_loss(model, disc, x, torch.zeros(2, dtype=torch.long), enc, model.decode(enc.z), cfg)
    unit = 3 * 32 * 32 if per_pixel and reduction == "sum" else 1
    expected = t["rec"] + t["kl"] + t["adv"] + 0.01 * unit * t["ae"]  # Eq. 4 with w_r = w_adv = 1
    assert t["ae"] > 0 and torch.allclose(total, expected)


def _dw(bias: float = 50.0):
    """A tiny CAVGA-Dw, its classifier set to call every image normal (L_cga then counts them all)."""
    cfg = RunConfig()
    cfg.model.variant, cfg.model.base_channels, cfg.model.latent_channels = "Dw", 8, 8
    torch.manual_seed(0)
    model, disc = build_networks(cfg.model, 32)
    with torch.no_grad():
        model.classifier.bias.copy_(torch.tensor([bias, -bias]))
        model.classifier.weight[1].mul_(3.0)  # A_ca's raw map above the normal peak in places
    return cfg, model.train(), disc


def test_cga_reads_the_class_maps_of_zs_mean_whatever_the_sampled_noise():
    """Eq. 5's maps are those inference reads (C on mu): two draws of z's noise give one L_cga."""
    cfg, model, disc = _dw()
    x, labels = torch.rand(4, 3, 32, 32), torch.zeros(4, dtype=torch.long)
    cga = []
    for seed in (1, 2):
        m = copy.deepcopy(model)  # the same running attention scale for both
        torch.manual_seed(seed)
        enc = m.encode(x)
        cga.append(generator_loss(m, disc, x, labels, enc, m.decode(enc.z), cfg)[1]["cga"])
    assert cga[0] > 0 and torch.equal(cga[0], cga[1])


def test_cga_shrinks_a_ca_above_the_normal_peak_too():
    """L_cga = mean(1 - A_cn + A_ca), A_cn clamped at the running normal peak, A_ca not: by hand."""
    cfg, model, disc = _dw()
    x, labels = torch.rand(4, 3, 32, 32), torch.zeros(4, dtype=torch.long)
    enc = model.encode(x)
    cga = generator_loss(model, disc, x, labels, enc, model.decode(enc.z), cfg)[1]["cga"]
    scale = model.attention_scale()  # as generator_loss left it: this batch's mean normal peak
    logits = model.classify(enc.mu)  # (4, 2)
    cam_n, cam_a = (grad_cam_raw(enc.features, logits[:, k]) for k in (0, 1))  # (4, 1, h, w)
    assert (cam_a / scale).amax() > 1  # cells a clamp at the normal peak would take out of the loss
    expected = (1 - (cam_n / scale).clamp(max=1) + cam_a / scale).mean()
    assert torch.allclose(cga, expected, rtol=1e-5)
    grads = torch.autograd.grad(cga, enc.features)[0]  # (4, K, h, w)
    assert grads.abs().sum() > 0
