import pytest
import torch

from cavga.config import ModelConfig, RunConfig, to_dict
from cavga.errors import CavgaError
from cavga.fingerprint import config_fingerprint
from cavga.networks import CAVGA, ResidualUpBlock, ResNet18Encoder, build_networks
from cavga.step import make_optimizers, train_step


@pytest.mark.parametrize(
    ("variant", "flat", "grid"),
    [("Du", False, 4), ("Dw", False, 4), ("Ru", False, 2), ("Rw", False, 2), ("Ru", True, None), ("Dw", True, None)],
)
def test_shapes_finite_and_every_parameter_gets_a_gradient(variant, flat, grid):
    torch.manual_seed(0)
    cfg = RunConfig()
    cfg.model = ModelConfig(variant=variant, base_channels=8, latent_channels=16, flat_latent=flat, flat_latent_dim=10)
    cfg.data.image_size = 64
    model, disc = build_networks(cfg.model, 64, allow_random_init=True)
    x = torch.rand(4, 3, 64, 64)
    enc, x_hat = model(x)
    assert x_hat.shape == x.shape and 0 <= x_hat.min() and x_hat.max() <= 1
    if flat:
        assert enc.mu.shape == (4, 10)
    else:
        assert enc.mu.shape == (4, 16, grid, grid)  # the convolutional latent keeps a spatial grid
    assert disc(x).shape == (4,)
    opt_g, opt_d = make_optimizers(model, disc, cfg)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    labels = torch.tensor([0, 0, 0, 1])
    losses = train_step(model, disc, opt_g, opt_d, x, labels, cfg, torch.tensor([0.6, 2.0]))
    assert all(torch.isfinite(torch.as_tensor(v)) for v in losses.values())
    for name, p in list(model.named_parameters()) + list(disc.named_parameters()):
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, f"no gradient reached {name}"
    changed = [k for k, v in model.state_dict().items() if v.dtype.is_floating_point and not torch.equal(v, before[k])]
    assert changed


def test_dcgan_image_size_must_fit_the_stride():
    with pytest.raises(CavgaError):
        CAVGA(ModelConfig(variant="Ru"), 16, allow_random_init=True)


def test_resnet_without_weights_refuses_to_be_silently_random(monkeypatch):
    from torchvision.models import ResNet18_Weights

    def offline(*a, **k):
        raise OSError("no network")

    monkeypatch.setattr(type(ResNet18_Weights.IMAGENET1K_V1), "get_state_dict", offline)
    with pytest.raises(CavgaError, match="allow-random-init"):
        ResNet18Encoder("imagenet", allow_random_init=False)
    assert ResNet18Encoder("imagenet", allow_random_init=True).loaded_weights == "random"
    with pytest.raises(CavgaError, match="allow-random-init"):
        ResNet18Encoder("none", allow_random_init=False)


def test_resnet_loads_a_local_weights_file(tmp_path):
    from torchvision.models import resnet18

    torch.manual_seed(1)
    ref = resnet18(weights=None)
    path = tmp_path / "r18.pth"
    torch.save(ref.state_dict(), path)
    enc = ResNet18Encoder(str(path))
    assert enc.loaded_weights == str(path)
    assert torch.equal(enc.body[0].weight, ref.conv1.weight)
    (tmp_path / "bad.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CavgaError, match="bad.pth"):
        ResNet18Encoder(str(tmp_path / "bad.pth"))
    with pytest.raises(CavgaError, match="not found"):
        ResNet18Encoder(str(tmp_path / "missing.pth"))


@pytest.mark.parametrize(("stride", "grid"), [(4, 16), (8, 8), (16, 4)])
def test_dcgan_latent_stride_sets_the_attention_grid(stride, grid):
    model = CAVGA(ModelConfig(variant="Du", base_channels=8, latent_channels=4, latent_stride=stride), 64)
    enc, x_hat = model(torch.rand(2, 3, 64, 64))
    assert enc.features.shape[-2:] == (grid, grid) and enc.mu.shape == (2, 4, grid, grid)
    assert x_hat.shape == (2, 3, 64, 64)


@pytest.mark.gpu
def test_train_step_on_cuda():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    cfg = RunConfig()
    cfg.model = ModelConfig(variant="Dw", base_channels=8, latent_channels=8)
    model, disc = build_networks(cfg.model, 64)
    model, disc = model.cuda(), disc.cuda()
    opt_g, opt_d = make_optimizers(model, disc, cfg)
    x, labels = torch.rand(4, 3, 64, 64, device="cuda"), torch.tensor([0, 0, 0, 1], device="cuda")
    losses = train_step(model, disc, opt_g, opt_d, x, labels, cfg, torch.tensor([0.6, 2.0], device="cuda"))
    assert all(torch.isfinite(torch.tensor(v)) for v in losses.values())


def test_disc_channels_sets_only_the_discriminators_width():
    base = ModelConfig(variant="Du", base_channels=16, latent_channels=8)
    model, disc = build_networks(base, 64)
    model_half, disc_half = build_networks(
        ModelConfig(variant="Du", base_channels=16, latent_channels=8, disc_channels=8), 64
    )
    assert disc.body[0][0].out_channels == 16 and disc_half.body[0][0].out_channels == 8
    widths = [m.out_channels for m in disc_half.modules() if isinstance(m, torch.nn.Conv2d)]
    assert widths == [8, 16, 32, 64, 1]  # four stride-2 blocks, 64 -> 4 px, then the 4x4 logit
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in model_half.parameters())
    assert disc_half(torch.rand(2, 3, 64, 64)).shape == (2,)
    cfg = RunConfig()
    cfg.model.disc_channels = 0
    with pytest.raises(CavgaError, match="model.disc_channels"):
        cfg.validate()
    new = to_dict(RunConfig())
    old = {**new, "model": {k: v for k, v in new["model"].items() if k != "disc_channels"}}  # saved before the key
    assert config_fingerprint(new) == config_fingerprint(old)  # older runs keep their identity
    cfg.model.disc_channels = 32
    assert config_fingerprint(to_dict(cfg)) != config_fingerprint(new)


@pytest.mark.parametrize("cin,cout", [(32, 16), (16, 16)])  # a 1x1 skip, and the identity
def test_residual_block_is_the_papers_block_on_the_upsampled_input(cin, cout):
    """conv(relu(bn(up(x)))) + skip(up(x)) (Sec. 4), computed on a quarter of the pixels: the same
    output in training and eval mode, and the same gradients for every parameter and the input."""
    torch.manual_seed(0)
    block = ResidualUpBlock(cin, cout)
    with torch.no_grad():  # batch norm with a non-trivial affine and running statistics
        block.bn.weight.uniform_(0.5, 1.5)
        block.bn.bias.uniform_(-0.5, 0.5)
        block.bn.running_mean.uniform_(-0.3, 0.3)
        block.bn.running_var.uniform_(0.5, 2.0)
    x = torch.randn(4, cin, 5, 6)  # (B, cin, h, w)

    def reference(x):
        up = torch.nn.functional.interpolate(x, scale_factor=2.0, mode="nearest")  # (B, cin, 2h, 2w)
        training = block.bn.training
        bn = torch.nn.functional.batch_norm(
            up, block.bn.running_mean.clone(), block.bn.running_var.clone(), block.bn.weight, block.bn.bias, training
        )
        return block.conv(torch.relu(bn)) + block.skip(up)

    for train in (False, True):
        block.train(train)
        xs = [x.clone().requires_grad_(True) for _ in range(2)]
        ours, ref = block(xs[0]), reference(xs[1])
        assert ours.shape == (4, cout, 10, 12)
        torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)
        g = torch.randn_like(ref)
        grads = [
            torch.autograd.grad(out, [xi, *block.parameters()], g) for out, xi in zip((ours, ref), xs, strict=True)
        ]
        for a, b in zip(*grads, strict=True):
            torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
