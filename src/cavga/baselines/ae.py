"""The convolutional autoencoder of Bergmann et al. 2019 ([6]) and its L2 and SSIM losses and maps.

Encoder (input 128x128, [6] Table 1): convolutions 32 4x4/2, 32 4x4/2, 32 3x3/1, 64 4x4/2, 64 3x3/1,
128 4x4/2, 64 3x3/1, 32 3x3/1, then a d-channel convolution over the whole 8x8 grid to a 1x1
bottleneck (d = 100).  The decoder mirrors it with transposed convolutions.  LeakyReLU(0.2) follows
every layer except the bottleneck and the output, which are linear as in [6].  At other input
sizes S the bottleneck kernel is S/16.

Maps at the AE's resolution, averaged over colour channels: AE-L2 the squared residual
(x - x_hat)^2; AE-SSIM (1 - SSIM(x, x_hat)) / 2 with kornia's per-pixel SSIM map (11x11 Gaussian
window, sigma 1.5) -- halved, as in kornia's ``ssim_loss``, so that the map lies in [0, 1].
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..errors import CavgaError
from . import BASELINES_HINT


def _act() -> nn.LeakyReLU:
    return nn.LeakyReLU(0.2)


class ConvAutoencoder(nn.Module):
    """[6]'s autoencoder for (B, 3, S, S) images in [0, 1]; S a power of two >= 32."""

    def __init__(self, image_size: int = 128, latent_dim: int = 100, channels: int = 3):
        super().__init__()
        k = image_size // 16  # the 8x8 grid of [6] at S = 128
        self.image_size = image_size
        self.encoder = nn.Sequential(
            nn.Conv2d(channels, 32, 4, 2, 1), _act(),  # (B, 32, S/2, S/2)
            nn.Conv2d(32, 32, 4, 2, 1), _act(),  # (B, 32, S/4, S/4)
            nn.Conv2d(32, 32, 3, 1, 1), _act(),
            nn.Conv2d(32, 64, 4, 2, 1), _act(),  # (B, 64, S/8, S/8)
            nn.Conv2d(64, 64, 3, 1, 1), _act(),
            nn.Conv2d(64, 128, 4, 2, 1), _act(),  # (B, 128, S/16, S/16)
            nn.Conv2d(128, 64, 3, 1, 1), _act(),
            nn.Conv2d(64, 32, 3, 1, 1), _act(),
            nn.Conv2d(32, latent_dim, k, 1, 0),  # (B, d, 1, 1), linear
        )  # fmt: skip
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(latent_dim, 32, k, 1, 0), _act(),  # (B, 32, S/16, S/16)
            nn.Conv2d(32, 64, 3, 1, 1), _act(),
            nn.Conv2d(64, 128, 3, 1, 1), _act(),
            nn.ConvTranspose2d(128, 64, 4, 2, 1), _act(),  # (B, 64, S/8, S/8)
            nn.Conv2d(64, 64, 3, 1, 1), _act(),
            nn.ConvTranspose2d(64, 32, 4, 2, 1), _act(),  # (B, 32, S/4, S/4)
            nn.Conv2d(32, 32, 3, 1, 1), _act(),
            nn.ConvTranspose2d(32, 32, 4, 2, 1), _act(),  # (B, 32, S/2, S/2)
            nn.ConvTranspose2d(32, channels, 4, 2, 1),  # (B, 3, S, S), linear
        )  # fmt: skip

    def forward(self, x: Tensor) -> Tensor:
        return self.decoder(self.encoder(x))  # (B, 3, S, S)


def ssim_map(x: Tensor, y: Tensor, window: int = 11) -> Tensor:
    """kornia's per-pixel SSIM (B, C, H, W) of images in [0, 1] (Gaussian window, sigma 1.5)."""
    try:
        from kornia.metrics import ssim
    except ImportError:
        raise CavgaError(f"AE-SSIM needs the optional package kornia: {BASELINES_HINT}") from None
    return ssim(x, y, window, max_val=1.0)  # (B, C, H, W)


def l2_loss(x: Tensor, x_hat: Tensor) -> Tensor:
    """[6]'s per-pixel L2 loss: the mean of (x - x_hat)^2 over pixels, channels and the batch."""
    return (x - x_hat).pow(2).mean()


def ssim_loss(x: Tensor, x_hat: Tensor, window: int = 11) -> Tensor:
    """[6]'s SSIM loss: the mean of 1 - SSIM(x, x_hat) over pixels, channels and the batch."""
    return (1 - ssim_map(x, x_hat, window)).mean()


def l2_map(x: Tensor, x_hat: Tensor) -> Tensor:
    """AE-L2's anomaly map: the squared residual averaged over channels, (B, H, W)."""
    return (x - x_hat).pow(2).mean(dim=1)  # (B, H, W)


def ssim_residual_map(x: Tensor, x_hat: Tensor, window: int = 11) -> Tensor:
    """AE-SSIM's anomaly map: (1 - SSIM) / 2 averaged over channels, (B, H, W) in [0, 1]."""
    return ((1 - ssim_map(x, x_hat, window)) / 2).mean(dim=1).clamp(0, 1)  # (B, H, W)


def ae_loss(kind: str, x: Tensor, x_hat: Tensor, window: int = 11) -> Tensor:
    """The training loss of ``kind`` ("AE-L2" or "AE-SSIM")."""
    return l2_loss(x, x_hat) if kind == "AE-L2" else ssim_loss(x, x_hat, window)


def ae_map(kind: str, x: Tensor, x_hat: Tensor, window: int = 11) -> Tensor:
    """The anomaly map of ``kind`` ("AE-L2" or "AE-SSIM"), (B, H, W)."""
    return l2_map(x, x_hat) if kind == "AE-L2" else ssim_residual_map(x, x_hat, window)


def require_kornia(kind: str) -> None:
    """Fail before training starts when AE-SSIM lacks kornia."""
    if kind == "AE-SSIM":
        ssim_map(torch.zeros(1, 1, 11, 11), torch.zeros(1, 1, 11, 11), 3)
