"""CAVGA's losses, one pure function each, named after the paper's equations.

Reductions follow the equations literally.  Eq. 1 sums x_i log x_hat_i over the pixels of image
x_i and averages over the N images, and the KL is that of the whole latent, so both are sums per
image (the evidence lower bound of [23]), averaged over the batch.  Eq. 2 is per image; Eq. 3 and
Eq. 5 are means over the map's elements (the 1/|A|), averaged over images.

``reduction="mean"`` averages over elements instead (``loss.reduction``); it shifts the balance
the paper's weights were set for.  benchmarks/design_study.py measures both.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def _per_image(values: Tensor, reduction: str) -> Tensor:
    """Sum (or average) over everything but the batch dimension, then average over images."""
    flat = values.flatten(1)
    return (flat.sum(dim=1) if reduction == "sum" else flat.mean(dim=1)).mean()


def reconstruction_terms(x: Tensor, x_hat: Tensor) -> Tensor:
    """Eq. 1, L_R's per-pixel terms: binary cross-entropy of image and reconstruction (B, 3, S, S), float32."""
    with torch.autocast(x.device.type, enabled=False):  # BCE is unsafe in bf16: always float32
        x_hat, x = x_hat.float().clamp(1e-6, 1 - 1e-6), x.float()
        # Exported graphs (cavga export): the formula torch's kernel computes, written out. ONNX has
        # no BCE operator, and tracing the kernel records a Python-side shape check (a TracerWarning).
        if torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
            return -(x * x_hat.log() + (1 - x) * torch.log1p(-x_hat))
        return F.binary_cross_entropy(x_hat, x, reduction="none")


def reconstruction_loss(x: Tensor, x_hat: Tensor, reduction: str = "sum") -> Tensor:
    """Eq. 1, L_R: binary cross-entropy of image and reconstruction, summed over pixels, mean over images."""
    return _per_image(reconstruction_terms(x, x_hat), reduction)


def kl_terms(mu: Tensor, logvar: Tensor) -> Tensor:
    """Eq. 1, KL(q(z|x) || N(0, I))'s per-element terms, the shape of ``mu``."""
    return -0.5 * (1 + logvar - mu.pow(2) - logvar.exp())


def kl_loss(mu: Tensor, logvar: Tensor, reduction: str = "sum") -> Tensor:
    """Eq. 1, KL(q(z|x) || N(0, I)), summed over the latent's elements, mean over images."""
    return _per_image(kl_terms(mu, logvar), reduction)


def adversarial_d_loss(d_real: Tensor, d_fake: Tensor) -> Tensor:
    """Eq. 2 for the discriminator: -[log D(x) + log(1 - D(x_hat))], from logits."""
    return F.binary_cross_entropy_with_logits(d_real, torch.ones_like(d_real)) + F.binary_cross_entropy_with_logits(
        d_fake, torch.zeros_like(d_fake)
    )


def adversarial_g_loss(d_fake: Tensor) -> Tensor:
    """Eq. 2 for the encoder/decoder: the non-saturating form -log D(x_hat), from logits [17]."""
    return F.binary_cross_entropy_with_logits(d_fake, torch.ones_like(d_fake))


def _cell_mean(values: Tensor, weight: Tensor | None) -> Tensor:
    """(B,): the mean over each image's map cells, weighted by ``weight`` (B, 1, h, w), the share of
    each cell that holds image content (``data.resize``: pad or center); None: every cell counts fully."""
    if weight is None:
        return values.flatten(1).mean(dim=1)
    return (values * weight).flatten(1).sum(dim=1) / weight.flatten(1).sum(dim=1).clamp_min(1e-6)


def attention_expansion_loss(attention: Tensor, weight: Tensor | None = None) -> Tensor:
    """Eq. 3, L_ae: mean over images of mean_ij (1 - A_ij) (over the content cells, given ``weight``)."""
    return _cell_mean(1 - attention, weight).mean()


def classifier_loss(logits: Tensor, labels: Tensor, weight: Tensor | None = None) -> Tensor:
    """L_bce of Sec. 3.2: binary cross-entropy of C's anomalous probability softmax(logits)[1]
    (for two softmax nodes this equals the cross-entropy over the two classes)."""
    return F.cross_entropy(logits, labels, weight=weight)


def complementary_guided_attention_loss(
    a_normal: Tensor, a_anomalous: Tensor, logits: Tensor, labels: Tensor, weight: Tensor | None = None
) -> Tensor:
    """Eq. 5, L_cga: mean over images of 1(p = y = normal) * mean_ij (1 - A_cn + A_ca)."""
    correct_normal = (logits.argmax(dim=1) == 0) & (labels == 0)  # (B,)
    per_image = _cell_mean(1 - a_normal + a_anomalous, weight)  # (B,)
    return (per_image * correct_normal.to(per_image.dtype)).mean()
