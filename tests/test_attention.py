import numpy as np
import pytest
import scipy.ndimage
import torch
from torch import nn

from cavga.attention import (
    enlarged_average,
    gaussian_blur,
    grad_cam,
    grad_cam_raw,
    half_cell_average,
    image_map,
    latent_score,
    normalise_cam,
    unsupervised_cam_raw,
    upsample,
)
from cavga.config import ModelConfig
from cavga.errors import CavgaError
from cavga.losses import attention_expansion_loss, complementary_guided_attention_loss
from cavga.networks import CAVGA, Encoding


def test_grad_cam_matches_hand_computation():
    # features (1, 2, 2, 2); score = 3 * sum(F_0) - 1 * sum(F_1) -> alpha = (3, -1) (mean of constant grads)
    f = torch.tensor([[[[1.0, 2.0], [0.0, 1.0]], [[1.0, 0.0], [2.0, 0.0]]]], requires_grad=True)
    score = 3 * f[:, 0].sum(dim=(1, 2)) - f[:, 1].sum(dim=(1, 2))
    cam = grad_cam(f, score)
    raw = torch.relu(3 * f[0, 0] - f[0, 1])  # [[2, 6], [0, 3]] -> / 6
    assert torch.allclose(cam[0, 0], raw / 6, atol=1e-6)
    assert cam.shape == (1, 1, 2, 2)


def test_grad_cam_is_per_image_and_in_unit_range():
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 3, 1)
    f = torch.randn(5, 4, 3, 3, requires_grad=True)
    cam = grad_cam(f, latent_score(conv(f)))
    assert cam.min() >= 0 and cam.max() <= 1 + 1e-6
    for i in range(5):
        fi = f[i : i + 1].detach().requires_grad_(True)
        assert torch.allclose(cam[i], grad_cam(fi, latent_score(conv(fi)))[0], atol=1e-6)
    peaks = cam.flatten(1).amax(dim=1)
    assert torch.all((peaks > 0.999) | (peaks == 0))


def _model(variant: str) -> CAVGA:
    torch.manual_seed(0)
    return CAVGA(ModelConfig(variant=variant, base_channels=8, latent_channels=8), 32, allow_random_init=True)


def test_attention_expansion_gradient_reaches_encoder():
    model = _model("Du")
    x = torch.rand(3, 3, 32, 32)
    enc = model.encode(x)
    loss = attention_expansion_loss(grad_cam(enc.features, latent_score(enc.mu)))
    loss.backward()
    first_conv = model.encoder.body[0][0].weight
    assert first_conv.grad is not None and first_conv.grad.abs().sum() > 0
    assert model.to_mu.weight.grad.abs().sum() > 0  # through the second-order term


def test_classifier_and_cga_gradients_reach_encoder():
    model = _model("Dw")
    x = torch.rand(4, 3, 32, 32)
    enc = model.encode(x)
    logits = model.classify(enc.z)
    labels = logits.argmax(dim=1).detach() * 0  # all normal
    # force every image to be predicted normal so L_cga is active
    with torch.no_grad():
        model.classifier.bias.copy_(torch.tensor([50.0, -50.0]))
    logits = model.classify(enc.z)
    a_n, a_a = grad_cam(enc.features, logits[:, 0]), grad_cam(enc.features, logits[:, 1])
    loss = complementary_guided_attention_loss(a_n, a_a, logits, labels)
    assert float(loss.detach()) > 0
    loss.backward()
    assert model.encoder.body[0][0].weight.grad.abs().sum() > 0
    assert model.classifier.weight.grad.abs().sum() > 0


def test_upsample_shape():
    assert upsample(torch.rand(2, 1, 4, 4), 64).shape == (2, 1, 64, 64)
    assert upsample(torch.rand(2, 1, 4, 4), (30, 50)).shape == (2, 1, 30, 50)


def test_normalise_cam_by_a_fixed_scale_or_per_image():
    cam = torch.tensor([[[[0.0, 1.0], [2.0, 4.0]]], [[[0.5, 0.5], [0.5, 1.0]]]])  # (2, 1, 2, 2)
    per_image = normalise_cam(cam)
    assert torch.allclose(per_image[0, 0], torch.tensor([[0.0, 0.25], [0.5, 1.0]]), atol=1e-6)
    assert torch.allclose(per_image[1].amax(), torch.tensor(1.0), atol=1e-6)
    fixed = normalise_cam(cam, torch.tensor(2.0))
    # one unit for every image: a weak image stays weak, and values above the scale clamp at 1
    assert torch.allclose(fixed[0, 0], torch.tensor([[0.0, 0.5], [1.0, 1.0]]), atol=1e-6)
    assert torch.allclose(fixed[1, 0], torch.tensor([[0.25, 0.25], [0.25, 0.5]]), atol=1e-6)


def test_running_scale_tracks_training_peaks_and_is_saved():
    model = _model("Du")
    assert model.attention_scale() is None  # untrained: per-image maxima
    model.track_attention_peak(torch.tensor(2.0))
    assert float(model.attention_scale()) == 2.0
    model.track_attention_peak(torch.tensor(4.0))  # momentum 0.1
    assert abs(float(model.cam_scale) - 2.2) < 1e-6
    assert "cam_scale" in model.state_dict()
    model.cfg.attention_norm = "image"
    assert model.attention_scale() is None


def test_mu_energy_cam_is_agreement_with_the_image_mean_latent():
    # mu = W F + b (a 1x1 head): d(|mu|^2/2)/dF_ij = W^T mu_ij, so A_ij = ReLU(mean(mu) . (mu_ij - b))
    torch.manual_seed(0)
    head = nn.Conv2d(4, 3, 1)
    f = torch.randn(2, 4, 3, 3, requires_grad=True)
    mu = head(f)  # (2, 3, 3, 3)
    raw = unsupervised_cam_raw(Encoding(f, mu, mu, mu), "mu_energy")  # (2, 1, 3, 3)
    mean_mu = mu.detach().mean(dim=(2, 3), keepdim=True)  # (2, 3, 1, 1)
    centred = mu.detach() - head.bias.detach().view(1, 3, 1, 1)
    expected = torch.relu((mean_mu * centred).sum(dim=1, keepdim=True))
    assert torch.allclose(raw, expected, atol=1e-5)
    # image-dependent weights: alpha = W^T mean(mu) differs between the two images
    assert not torch.allclose(mean_mu[0], mean_mu[1])


def test_per_channel_cam_matches_a_loop_over_channels():
    torch.manual_seed(1)
    head = nn.Sequential(nn.Conv2d(4, 5, 3, padding=1), nn.Tanh())  # alpha differs per image and channel
    f = torch.randn(2, 4, 4, 4, requires_grad=True)
    mu = head(f)  # (2, 5, 4, 4)
    maps = []
    for c in range(5):
        (g,) = torch.autograd.grad(mu[:, c].sum(), f, retain_graph=True)  # per image: no cross terms
        maps.append(torch.relu((g.mean(dim=(2, 3), keepdim=True) * f).sum(dim=1, keepdim=True)))
    got = unsupervised_cam_raw(Encoding(f, mu, mu, mu), "per_channel", create_graph=False)
    assert torch.allclose(got, torch.stack(maps).mean(dim=0), atol=1e-5)


@pytest.mark.parametrize("layer, grid", [(0, 2), (1, 4), (2, 8)])
def test_attention_layer_picks_an_earlier_encoder_map(layer, grid):
    torch.manual_seed(0)
    model = CAVGA(ModelConfig(base_channels=8, latent_channels=8, attention_layer=layer), 32)
    enc = model.encode(torch.rand(2, 3, 32, 32))
    assert enc.features.shape[-1] == grid and enc.mu.shape[-1] == 2  # z keeps the encoder's own grid
    cam = unsupervised_cam_raw(enc, "mu_energy")
    assert cam.shape == (2, 1, grid, grid)
    cam.sum().backward()
    assert model.encoder.body[0][0].weight.grad.abs().sum() > 0


def test_attention_layer_beyond_the_encoder_is_an_error():
    model = CAVGA(ModelConfig(base_channels=8, latent_channels=8, latent_stride=4, attention_layer=3), 32)
    with pytest.raises(CavgaError, match="attention_layer"):
        model.encode(torch.rand(1, 3, 32, 32))


def _reference_cam(features: torch.Tensor, score_of) -> torch.Tensor:
    """Grad-CAM image by image: alpha = mean of d score_i / d F_i, ReLU(sum_k alpha_k F_k)."""
    cams = []
    for i in range(features.shape[0]):
        f = features[i : i + 1].detach().requires_grad_(True)  # (1, K, h, w)
        (g,) = torch.autograd.grad(score_of(f).sum(), f)  # (1, K, h, w)
        alpha = g.mean(dim=(2, 3), keepdim=True)  # (1, K, 1, 1)
        cams.append(torch.relu((alpha * f).sum(dim=1, keepdim=True)))  # (1, 1, h, w)
    return torch.cat(cams)


def test_grad_cam_raw_matches_a_per_image_autograd_reference():
    torch.manual_seed(0)
    conv = nn.Conv2d(6, 4, 1)
    act = nn.LeakyReLU(0.2)

    def score_of(f: torch.Tensor) -> torch.Tensor:  # non-linear between F and the score: alpha depends on F
        return torch.tanh(act(conv(f))).flatten(1).sum(dim=1)  # (B,)

    f = (torch.randn(4, 6, 5, 5) + torch.linspace(-1, 1, 4).view(4, 1, 1, 1)).requires_grad_(True)  # (B, K, h, w)
    ref = _reference_cam(f, score_of)  # (B, 1, h, w)
    # alpha differs between images, so a batch-wide or constant alpha could not pass
    (g,) = torch.autograd.grad(score_of(f).sum(), f)
    alphas = g.mean(dim=(2, 3))  # (B, K)
    assert (alphas - alphas.mean(dim=0)).abs().max() > 0.05
    assert ref.amax() > 0.1 and (ref == 0).any()  # the ReLU is active somewhere and off somewhere
    for create_graph in (True, False):
        cam = grad_cam_raw(f, score_of(f), create_graph)
        assert cam.shape == (4, 1, 5, 5)
        assert torch.allclose(cam, ref, atol=1e-6)


def _cell_means(x: torch.Tensor, cell: int = 16) -> torch.Tensor:
    """A stand-in map at a latent grid: each cell's mean of channel 0, (B, 1, S/cell, S/cell)."""
    return torch.nn.functional.avg_pool2d(x[:, :1], cell)


def test_half_cell_average_of_a_constant_map_is_that_constant_and_views_count_once_each():
    x = torch.full((2, 3, 64, 64), 0.25)
    for views in (2, 4):  # 4: the quarter-cell shifts the probe measured (16 views)
        out = half_cell_average(_cell_means, x, _cell_means(x), views=views)  # (B, 1, S, S)
        assert out.shape == (2, 1, 64, 64)
        torch.testing.assert_close(out, torch.full_like(out, 0.25))  # the border, seen by fewer views, too
    seen = []  # the shifts read: (0, 4), (0, 8), ... (12, 12), each once, by 16 px cells / 4
    x = torch.rand(1, 3, 64, 64)
    half_cell_average(lambda v: seen.append(v) or _cell_means(v), x, torch.zeros(1, 1, 4, 4), views=4)
    assert len(seen) == 15


def test_half_cell_average_finds_a_defect_between_cell_centres_nearer():
    """A 4 px spot at the corner where four 16 px cells meet: the one-view map (upsampled 4x4 grid)
    spreads it over all four cells and peaks at their centres, 8 px away in each direction; the
    views shifted by 8 px have a cell centred on it, so the average peaks on the spot."""
    x = torch.zeros(1, 3, 64, 64)
    x[..., 30:34, 30:34] = 1.0  # centre (31.5, 31.5): the corner of cells (1, 1), (1, 2), (2, 1), (2, 2)
    plain = upsample(_cell_means(x), 64)[0, 0]  # (S, S)
    shifted = half_cell_average(_cell_means, x, _cell_means(x))[0, 0]  # (S, S)

    def peak_distance(m):
        i = int(m.argmax())
        return ((i // 64 - 31.5) ** 2 + (i % 64 - 31.5) ** 2) ** 0.5

    assert peak_distance(shifted) < 2 < peak_distance(plain)
    assert float(shifted[30:34, 30:34].mean()) > float(plain[30:34, 30:34].mean())


def test_half_cell_average_is_the_map_itself_where_the_grid_is_the_image():
    x = torch.rand(1, 3, 8, 8)
    first = x[:, :1].clone()  # (B, 1, S, S): a map at full resolution has no half cell
    assert torch.equal(half_cell_average(lambda v: v[:, :1], x, first), first)


def test_enlarged_average_separates_a_defect_from_the_rest_of_its_cell():
    """An 8 px spot filling the top-left quarter of one 16 px cell: the one-view map gives the whole
    cell one value, so the spot's quarter and the cell's opposite quarter come out alike; the
    enlarged image's grid has a cell on the spot alone, so the average sets the spot apart."""
    x = torch.zeros(1, 3, 64, 64)
    x[..., 16:24, 16:24] = 1.0  # the top-left quarter of cell (1, 1)
    first = _cell_means(x)  # (B, 1, 4, 4)
    out = enlarged_average(_cell_means, x, first)  # (B, 1, 8, 8): the enlarged image's grid
    assert out.shape == (1, 1, 8, 8)
    # by hand, fine cell (3, 3): the 4x4 grid upsampled there weighs cell (1, 1) (0.25) by 0.75 * 0.75;
    # the enlarged spot reaches that cell at its corner pixel only (bilinear weight 0.25 on the spot per
    # axis: 0.0625, over the cell's 256 pixels)
    assert float(out[0, 0, 3, 3]) == pytest.approx(0.5 * (0.75 * 0.75 * 0.25 + 0.0625 / 256), abs=1e-6)
    plain, both = upsample(first, 64)[0, 0], upsample(out, 64)[0, 0]  # (S, S)
    spot, far = (slice(16, 24), slice(16, 24)), (slice(24, 32), slice(24, 32))  # the spot, the cell's other corner
    assert float(plain[spot].mean()) == pytest.approx(float(plain[far].mean()), rel=1e-5)  # symmetric around the centre
    assert float(both[spot].mean()) > 2 * float(both[far].mean())
    flat = torch.full((2, 3, 64, 64), 0.25)
    torch.testing.assert_close(enlarged_average(_cell_means, flat, _cell_means(flat)), torch.full((2, 1, 8, 8), 0.25))


def test_gaussian_blur_matches_scipy():
    m = np.random.default_rng(0).random((2, 40, 44)).astype(np.float32)
    ours = gaussian_blur(torch.from_numpy(m), 4.0).numpy()
    # torch's "reflect" padding is scipy's "mirror"; radius ceil(4 sigma) = scipy's truncate 4
    ref = np.stack([scipy.ndimage.gaussian_filter(a, 4.0, mode="mirror", truncate=4.0) for a in m])
    assert np.allclose(ours, ref, atol=1e-5)


def test_image_map_upsamples_then_blurs_then_clamps():
    """infer.map_blur: the map read at the image's size is the bilinear upsampling blurred (scipy's
    Gaussian, as a reference) and clamped to [0, 1], in that order; 0 leaves the upsampling as it is."""
    g = torch.Generator().manual_seed(3)
    amap = 1.6 * torch.rand(2, 1, 4, 4, generator=g) - 0.3  # (B, 1, h, w), values outside [0, 1] too
    up = upsample(amap, 32)[:, 0].numpy()  # (B, S, S)
    ref = np.stack([scipy.ndimage.gaussian_filter(a, 2.0, mode="mirror", truncate=4.0) for a in up]).clip(0, 1)
    assert np.allclose(image_map(amap, 32, 2.0).numpy(), ref, atol=1e-5)
    clamped_first = np.stack([scipy.ndimage.gaussian_filter(a, 2.0, mode="mirror") for a in up.clip(0, 1)])
    assert not np.allclose(image_map(amap, 32, 2.0).numpy(), clamped_first, atol=1e-3)  # the order matters here
    assert np.allclose(image_map(amap, 32, 0.0).numpy(), up.clip(0, 1))


@pytest.mark.parametrize("variant, kind", [("Du", "mu_energy"), ("Du", "mu_sum"), ("Du", "per_channel"), ("Dw", None)])
def test_training_grad_cam_below_z_is_each_images_own_through_batch_norm(variant, kind):
    """At attention_layer 1 the encoder's top block holds batch norm, which in training normalises by
    the batch's statistics. The map L_ae and L_cga train on must be each image's own: the per-image
    map of the same network with those statistics fixed (eval mode, running statistics set to the
    batch's), and no image's score may move with another image's features."""
    torch.manual_seed(0)
    model = CAVGA(ModelConfig(variant=variant, base_channels=8, latent_channels=8, attention_layer=1), 32)
    model.train()
    x = torch.rand(4, 3, 32, 32) + torch.linspace(-0.5, 0.5, 4).view(4, 1, 1, 1)  # (B, 3, S, S)

    def cam_of(enc: Encoding) -> torch.Tensor:
        if kind is not None:
            return unsupervised_cam_raw(enc, kind)  # (B, 1, h, w)
        return grad_cam_raw(enc.features, model.classify(enc.score_mu)[:, 0])  # A_cn's, as training takes it

    f = model.encode_features(x).detach().requires_grad_(True)  # (B, K, h', w')
    top = model.encoder.body[model._split() :]
    bns = [m for m in top.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns, "the top block holds batch norm: the case under test"
    inputs = []
    hooks = [bn.register_forward_hook(lambda m, i, o: inputs.append(i[0].detach())) for bn in bns]
    cam = cam_of(model.latent(f))  # (B, 1, h', w'), training mode
    for h in hooks:
        h.remove()
    score = model.latent(f).score_mu.flatten(1).sum(dim=1)  # (B,)
    (cross,) = torch.autograd.grad(score[0], f)
    assert cross[1:].abs().max() == 0 and cross[0].abs().max() > 0  # image 0's score: image 0's features only

    for bn, seen in zip(bns, inputs[: len(bns)], strict=True):  # the batch statistics the training pass used
        bn.running_mean.copy_(seen.mean(dim=(0, 2, 3)))
        bn.running_var.copy_(seen.var(dim=(0, 2, 3), unbiased=False))
    model.eval()
    for i in range(4):  # each image alone, batch norm as a fixed map: Grad-CAM's own definition
        fi = f[i : i + 1].detach().requires_grad_(True)
        assert torch.allclose(cam[i : i + 1], cam_of(model.latent(fi)), atol=1e-5, rtol=1e-4)
