"""CAVGA's networks (Sec. 3 and 4, "Architecture details"); no training code lives here.

* CAVGA-D: the DCGAN discriminator trunk [42] as encoder, the DCGAN generator as decoder.
* CAVGA-R: the convolutional layers of ResNet-18 [19] as encoder (or EfficientNet-Lite0, see
  :mod:`cavga.backbones`), a residual generator [9] as decoder.
* Both share the DCGAN discriminator and, for CAVGA-w, the binary classifier C on the flattened z.

The encoder's last feature map ``features`` (B, K, h, w) parameterises the convolutional latent z:
``mu = conv1x1(features)``, ``logvar = conv1x1(features)``, ``z = mu + exp(logvar / 2) * eps``.
For the ablation CAVGA-R* the latent is flattened instead: ``features`` go through a fully connected
layer to a 100-d ``mu``/``logvar`` (Sec. 6).  Grad-CAM (see :mod:`cavga.attention`) is taken on
``features``; that is why :class:`CAVGA` exposes ``encode_features`` and ``latent`` separately.

All images are in [0, 1]; the decoder ends in a sigmoid so the BCE reconstruction loss of Eq. 1 applies.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .backbones import (  # noqa: F401 - ResNet18Encoder, load_backbone_weights stay importable from here
    IMAGENET_MEAN,
    IMAGENET_STD,
    ResNet18Encoder,
    build_encoder,
    load_backbone_weights,
)
from .config import ModelConfig
from .config.resolve import resolve_model
from .errors import CavgaError


def _dcgan_init(module: nn.Module) -> None:
    """DCGAN weight init [42]: N(0, 0.02) for convolutions, N(1, 0.02) for batch-norm scales."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


def _down_block(cin: int, cout: int, norm: bool) -> nn.Sequential:
    """DCGAN discriminator block: 4x4 stride-2 conv, batch norm (not on the first), LeakyReLU(0.2)."""
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, 4, 2, 1, bias=not norm)]
    if norm:
        layers.append(nn.BatchNorm2d(cout))
    layers.append(nn.LeakyReLU(0.2, inplace=True))
    return nn.Sequential(*layers)


def _dcgan_widths(nf: int, stride: int) -> list[int]:
    """Channel widths of DCGAN's stride-2 stages: nf, 2nf, 4nf, 8nf (four stages for stride 16)."""
    n = int(math.log2(stride))
    return [nf * min(2**i, 8) for i in range(n)]


class DCGANEncoder(nn.Module):
    """DCGAN discriminator trunk: stride-2 blocks; with stride 16, ``features`` are (B, 8nf, S/16, S/16)."""

    def __init__(self, in_channels: int = 3, nf: int = 64, stride: int = 16):
        super().__init__()
        self.stride = stride
        widths = _dcgan_widths(nf, stride)
        blocks, cin = [], in_channels
        for i, w in enumerate(widths):
            blocks.append(_down_block(cin, w, norm=i > 0))
            cin = w
        self.body = nn.Sequential(*blocks)
        self.out_channels = cin
        _dcgan_init(self)

    def prepare(self, x: Tensor) -> Tensor:
        return x  # DCGAN takes images in [0, 1] as they are

    def forward(self, x: Tensor) -> Tensor:
        return self.body(self.prepare(x))  # (B, 8nf, S/16, S/16)


class DCGANDecoder(nn.Module):
    """DCGAN generator: a 3x3 projection of z, then log2(stride) stride-2 transposed convolutions (four for 16)."""

    def __init__(self, latent_channels: int, out_channels: int = 3, nf: int = 64, stride: int = 16):
        super().__init__()
        widths = _dcgan_widths(nf, stride)[::-1]
        layers: list[nn.Module] = [
            nn.Conv2d(latent_channels, widths[0], 3, 1, 1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
        ]
        for cin, cout in zip(widths[:-1], widths[1:], strict=True):
            layers += [nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(True)]
        layers += [nn.ConvTranspose2d(widths[-1], out_channels, 4, 2, 1), nn.Sigmoid()]
        self.body = nn.Sequential(*layers)
        _dcgan_init(self)

    def forward(self, z: Tensor) -> Tensor:
        return self.body(z)  # (B, 3, stride*h, stride*w)


class ResidualUpBlock(nn.Module):
    """Residual generator block [9] as modified in Sec. 4: upsample, then a convolution whose output
    gets a skip connection from the upsampled input; stacked blocks interleave each convolution
    between two upsampling layers.

    Computed as conv(up(relu(bn(x)))) + up(skip(x)), which is conv(relu(bn(up(x)))) + skip(up(x)):
    nearest upsampling copies each pixel into a 2x2 square, so it commutes with every per-pixel map
    (batch norm, ReLU, the 1x1 skip), and in training the copies leave the batch mean and biased
    variance as they were. Only the 3x3 convolution needs the upsampled tensor; the rest runs on a
    quarter of the pixels (docs/performance.md). The running variance's unbiased correction counts
    the pixels before upsampling (n / (n - 1) with a quarter of the n)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(cin)
        self.conv = nn.Conv2d(cin, cout, 3, 1, 1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        h = F.interpolate(F.relu(self.bn(x)), scale_factor=2.0, mode="nearest")  # (B, cin, 2h, 2w)
        skip = F.interpolate(self.skip(x), scale_factor=2.0, mode="nearest")  # (B, cout, 2h, 2w)
        return self.conv(h) + skip  # (B, cout, 2h, 2w)


class ResidualDecoder(nn.Module):
    """Residual generator decoder: ``n_up`` up-blocks (log2 of the encoder stride: five from S/32, four
    from S/16) to S, then BN-ReLU-conv3x3-sigmoid."""

    def __init__(self, latent_channels: int, out_channels: int = 3, width: int = 512, n_up: int = 5):
        super().__init__()
        widths = [max(width // 2**i, 16) for i in range(n_up + 1)]
        self.stem = nn.Conv2d(latent_channels, widths[0], 3, 1, 1)
        self.blocks = nn.Sequential(*[ResidualUpBlock(a, b) for a, b in zip(widths[:-1], widths[1:], strict=True)])
        self.head = nn.Sequential(
            nn.BatchNorm2d(widths[-1]), nn.ReLU(True), nn.Conv2d(widths[-1], out_channels, 3, 1, 1), nn.Sigmoid()
        )

    def forward(self, z: Tensor) -> Tensor:
        return self.head(self.blocks(self.stem(z)))  # (B, 3, 2^n_up h, 2^n_up w)


class Discriminator(nn.Module):
    """DCGAN discriminator [42]: stride-2 blocks down to 4x4, then a 4x4 convolution to one logit.

    It returns logits; ``sigmoid(logit)`` is the D(.) of Eq. 2 (the losses use the numerically stable
    ``binary_cross_entropy_with_logits``, which is the same function).
    """

    def __init__(self, image_size: int, in_channels: int = 3, nf: int = 64):
        super().__init__()
        n_down = int(math.log2(image_size)) - 2  # image_size -> 4
        blocks, cin = [], in_channels
        for i in range(n_down):
            cout = nf * min(2**i, 8)
            blocks.append(_down_block(cin, cout, norm=i > 0))
            cin = cout
        self.body = nn.Sequential(*blocks)
        self.head = nn.Conv2d(cin, 1, 4, 1, 0)
        _dcgan_init(self)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(x)).flatten(1).squeeze(1)  # (B,)


def trains_batch_norm(module: nn.Module) -> bool:
    """Whether ``module`` holds a batch norm in training mode (normalising by each batch's statistics)."""
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training for m in module.modules())


@contextmanager
def per_image_batch_norm(module: nn.Module) -> Iterator[None]:
    """Inside, each training-mode batch norm of ``module`` normalises by its batch's statistics as
    before, but held as constants: no image's output then depends on another image's input, and the
    running statistics are left alone (the pass outside updated them)."""
    patched = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training]

    def constant_stats(bn: nn.modules.batchnorm._BatchNorm, x: Tensor) -> Tensor:
        dims = [0, *range(2, x.dim())]
        mean, var = x.mean(dims).detach(), x.var(dims, unbiased=False).detach()  # (K,): as batch norm's own
        return F.batch_norm(x, mean, var, bn.weight, bn.bias, False, 0.0, bn.eps)

    for bn in patched:
        bn.forward = partial(constant_stats, bn)  # an instance attribute: nn.Module.__call__ takes it
    try:
        yield
    finally:
        for bn in patched:
            del bn.forward


@dataclass
class Encoding:
    """What the encoder gives for a batch."""

    features: Tensor  # (B, K, h', w') the encoder feature map Grad-CAM is taken at (model.attention_layer)
    mu: Tensor  # (B, C, h, w) convolutional latent mean, or (B, d) when flattened
    logvar: Tensor  # same shape as mu
    z: Tensor  # same shape as mu; a reparameterised sample in training mode, mu in eval mode
    # mu and z as Grad-CAM's score reads them in training below z (CAVGA.latent); None: mu and z themselves
    cam_mu: Tensor | None = None
    cam_z: Tensor | None = None

    @property
    def score_mu(self) -> Tensor:
        """z's mean for Grad-CAM's score: each image's from its own features alone."""
        return self.mu if self.cam_mu is None else self.cam_mu

    @property
    def score_z(self) -> Tensor:
        """The sampled z for Grad-CAM's score (``z_sum``), as :attr:`score_mu`."""
        return self.z if self.cam_z is None else self.cam_z


class CAVGA(nn.Module):
    """Encoder, latent, decoder and (for CAVGA-w) the classifier C; the discriminator is separate."""

    def __init__(self, cfg: ModelConfig, image_size: int, allow_random_init: bool = False):
        super().__init__()
        # cavga.train resolves "auto" settings first; a network built on its own is distilled by no one,
        # so there auto means from scratch (cavga.config.resolve)
        cfg = resolve_model(cfg, teacher=False, allow_random_init=allow_random_init)
        self.cfg = cfg
        self.image_size = image_size
        if cfg.arch == "D":  # model.encoder_init "distill": pretrained later by cavga.distill
            self.encoder: nn.Module = DCGANEncoder(3, cfg.base_channels, cfg.latent_stride)
        else:
            self.encoder = build_encoder(cfg.backbone, cfg.backbone_weights, allow_random_init, cfg.encoder_stride)
        self._freeze_encoder_if_asked()
        stride = self.encoder.stride
        if image_size % stride or image_size < stride:
            raise CavgaError(f"image_size {image_size} must be a multiple of {stride} for CAVGA-{cfg.arch}")
        k, h = self.encoder.out_channels, image_size // stride
        self.grid = h
        c = cfg.latent_channels
        if cfg.flat_latent:
            d = cfg.flat_latent_dim
            self.to_mu: nn.Module = nn.Sequential(nn.Flatten(), nn.Linear(k * h * h, d))
            self.to_logvar: nn.Module = nn.Sequential(nn.Flatten(), nn.Linear(k * h * h, d))
            self.from_flat: nn.Module = nn.Sequential(nn.Linear(d, c * h * h), nn.Unflatten(1, (c, h, h)))
            latent_numel = d
        else:
            self.to_mu = nn.Conv2d(k, c, 1)
            self.to_logvar = nn.Conv2d(k, c, 1)
            self.from_flat = nn.Identity()
            latent_numel = c * h * h
        if getattr(self.encoder, "loaded_weights", "random") != "random":
            self._zero_logvar_head()
        if cfg.arch == "D":
            self.decoder: nn.Module = DCGANDecoder(c, 3, cfg.base_channels, cfg.latent_stride)
        else:
            self.decoder = ResidualDecoder(c, 3, n_up=int(math.log2(stride)))
        # C: z cloned and flattened (z_fc shares z's values and parameters), then a 2-node layer (Sec. 3.2).
        self.classifier = nn.Linear(latent_numel, 2) if cfg.weakly_supervised else None
        # Running peak of the raw Grad-CAM on training images: the fixed scale that maps attention
        # into [0, 1] (see cavga.attention); 0 until the first training step.
        self.register_buffer("cam_scale", torch.zeros(()))
        self._scale_known_positive = False

    def _zero_logvar_head(self) -> None:
        """Pretrained features are not unit-scale (Lite0's stride-16 map has std ~5): a default-
        initialised log-variance head then starts at logvar up to ~15 and a KL of millions per
        image. Starting it at zero makes q(z|x) = N(mu, I) at the first step."""
        logvar_layer = self.to_logvar[-1] if self.cfg.flat_latent else self.to_logvar
        nn.init.zeros_(logvar_layer.weight)
        nn.init.zeros_(logvar_layer.bias)

    def encoder_pretrained(self, source: str) -> None:
        """The encoder was given pretrained weights after construction (cavga.distill): record where
        from, start the log-variance head at zero as for any pretrained encoder, freeze it if asked."""
        self.encoder.loaded_weights = source
        self._zero_logvar_head()
        self._freeze_encoder_if_asked()

    def _freeze_encoder_if_asked(self) -> None:
        """``model.freeze_encoder``: no gradient for the encoder, its batch norm in eval mode."""
        if self.cfg.freeze_encoder:
            self.encoder.requires_grad_(False)
            self.encoder.eval()

    def attention_scale(self) -> Tensor | None:
        """The scale Grad-CAM maps are divided by: the running peak, or None for per-image maxima.

        Once the scale is known to be positive (it only grows from 0 by a running mean of peaks)
        that is remembered, so a training step does not wait on the device to read it back."""
        if self.cfg.attention_norm == "image":
            return None
        if not self._scale_known_positive:
            if float(self.cam_scale) <= 0:
                return None
            self._scale_known_positive = True
        return self.cam_scale

    def _load_from_state_dict(self, *args, **kwargs):
        self._scale_known_positive = False  # a loaded scale is read afresh
        super()._load_from_state_dict(*args, **kwargs)

    @torch.no_grad()
    def track_attention_peak(self, peak: Tensor) -> None:
        """Fold a training batch's mean Grad-CAM peak into the running scale (momentum as batch norm);
        the first batch's peak starts it. No host sync: both cases are computed on the device."""
        m = self.cfg.attention_momentum
        self.cam_scale.copy_(torch.where(self.cam_scale <= 0, peak, self.cam_scale * (1 - m) + m * peak))

    @property
    def encoder_frozen(self) -> bool:
        return self.cfg.freeze_encoder

    def train(self, mode: bool = True) -> CAVGA:
        """As nn.Module.train, but a frozen encoder stays in eval mode (its batch-norm statistics fixed)."""
        super().train(mode)
        if self.encoder_frozen:
            self.encoder.eval()
        return self

    def _split(self) -> int:
        """Index of the first encoder block after the attention layer (``model.attention_layer``
        counts blocks back from the encoder's last feature map, which z is computed from)."""
        body = self.encoder.body
        k = len(body) - self.cfg.attention_layer
        if not 1 <= k <= len(body):
            raise CavgaError(f"model.attention_layer: {self.cfg.attention_layer} is outside 0..{len(body) - 1}")
        return k

    def encode_features(self, x: Tensor) -> Tensor:
        """The feature map Grad-CAM is taken at (the encoder's output for attention_layer 0)."""
        if not self.encoder_frozen:
            return self.encoder.body[: self._split()](self.encoder.prepare(x))  # (B, K, h', w')
        with torch.no_grad():  # a frozen encoder needs no graph below the map Grad-CAM starts at
            features = self.encoder.body[: self._split()](self.encoder.prepare(x))  # (B, K, h', w')
        return features.requires_grad_(torch.is_grad_enabled())

    def latent(self, features: Tensor) -> Encoding:
        """The rest of the encoder after ``features``, then the latent heads and the sample z.

        Grad-CAM sums the batch's scores and takes one gradient, which gives each image its own
        only if no image's score depends on another's features. Below z (``attention_layer`` >= 1)
        the encoder's top blocks hold batch norm, which in training normalises by the batch's
        statistics and so couples the images. There the same features run the top blocks a second
        time with those statistics held as constants (:func:`per_image_batch_norm`): the same
        values, each image's score from its own features alone (``Encoding.cam_mu``). In eval mode,
        at layer 0, or on a frozen encoder (batch norm in eval mode) nothing couples them."""
        top_blocks = self.encoder.body[self._split() :]
        mu, logvar = self._heads(top_blocks(features))  # (B, C, h, w) or (B, d)
        if not self.training:
            return Encoding(features, mu, logvar, mu)
        noise = torch.randn_like(mu)
        z = mu + noise * torch.exp(0.5 * logvar)
        if not trains_batch_norm(top_blocks):
            return Encoding(features, mu, logvar, z)
        with per_image_batch_norm(top_blocks):
            cam_mu, cam_logvar = self._heads(top_blocks(features))
        return Encoding(features, mu, logvar, z, cam_mu, cam_mu + noise * torch.exp(0.5 * cam_logvar))

    def _heads(self, top: Tensor) -> tuple[Tensor, Tensor]:
        """z's mean and (clamped) log-variance from the encoder's last map ``top`` (B, K, h, w)."""
        return self.to_mu(top), self.to_logvar(top).clamp(-30.0, 20.0)

    def encode(self, x: Tensor) -> Encoding:
        return self.latent(self.encode_features(x))

    def decode(self, z: Tensor) -> Tensor:
        return self.decoder(self.from_flat(z))  # (B, 3, S, S)

    def classify(self, z: Tensor) -> Tensor:
        if self.classifier is None:
            raise RuntimeError("this model has no classifier (unsupervised variant)")
        return self.classifier(z.flatten(1))  # (B, 2) logits: [normal, anomalous]

    def forward(self, x: Tensor) -> tuple[Encoding, Tensor]:
        enc = self.encode(x)
        return enc, self.decode(enc.z)


def build_networks(
    cfg: ModelConfig, image_size: int, allow_random_init: bool = False, from_checkpoint: bool = False
) -> tuple[CAVGA, Discriminator]:
    """The generator side (encoder, decoder, classifier) and the discriminator for one variant.

    ``from_checkpoint``: every weight will come from a checkpoint, so no backbone is fetched."""
    if from_checkpoint:
        cfg = dataclasses.replace(cfg, backbone_weights="none")
        allow_random_init = True
    return CAVGA(cfg, image_size, allow_random_init), Discriminator(
        image_size, 3, cfg.disc_channels or cfg.base_channels
    )
