"""CAVGA's losses, one pure function each, named after the paper's equations.

Reductions: the reconstruction BCE is averaged over pixels and the KL over latent elements (then
both over images).  With these per-element means the terms have comparable scales, which is what
makes the paper's weights (1, 1, 0.01 and 1, 1, 0.001, 0.01) meaningful; summed per image, the
BCE of a 256x256 image would be ~1e5 times the attention loss and the weights would be moot.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def reconstruction_loss(x: Tensor, x_hat: Tensor) -> Tensor:
    """Eq. 1, L_R: binary cross-entropy between the image and its reconstruction, both in [0, 1]."""
    return F.binary_cross_entropy(x_hat.clamp(1e-6, 1 - 1e-6), x)


def kl_loss(mu: Tensor, logvar: Tensor) -> Tensor:
    """Eq. 1, KL(q(z|x) || N(0, I)), averaged over latent elements and images."""
    return (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp())).mean()


def adversarial_d_loss(d_real: Tensor, d_fake: Tensor) -> Tensor:
    """Eq. 2 for the discriminator: -[log D(x) + log(1 - D(x_hat))], from logits."""
    return F.binary_cross_entropy_with_logits(d_real, torch.ones_like(d_real)) + F.binary_cross_entropy_with_logits(
        d_fake, torch.zeros_like(d_fake)
    )


def adversarial_g_loss(d_fake: Tensor) -> Tensor:
    """Eq. 2 for the encoder/decoder: the non-saturating form -log D(x_hat), from logits [17]."""
    return F.binary_cross_entropy_with_logits(d_fake, torch.ones_like(d_fake))


def attention_expansion_loss(attention: Tensor) -> Tensor:
    """Eq. 3, L_ae: mean over images of mean_ij (1 - A_ij)."""
    return (1 - attention).mean()


def classifier_loss(logits: Tensor, labels: Tensor, weight: Tensor | None = None) -> Tensor:
    """L_bce of Sec. 3.2: binary cross-entropy of C's anomalous probability softmax(logits)[1]
    (for two softmax nodes this equals the cross-entropy over the two classes)."""
    return F.cross_entropy(logits, labels, weight=weight)


def complementary_guided_attention_loss(
    a_normal: Tensor, a_anomalous: Tensor, logits: Tensor, labels: Tensor
) -> Tensor:
    """Eq. 5, L_cga: mean over images of 1(p = y = normal) * mean_ij (1 - A_cn + A_ca)."""
    correct_normal = (logits.argmax(dim=1) == 0) & (labels == 0)  # (B,)
    per_image = (1 - a_normal + a_anomalous).flatten(1).mean(dim=1)  # (B,)
    return (per_image * correct_normal.to(per_image.dtype)).mean()
