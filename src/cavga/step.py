"""One training step of CAVGA: a discriminator update, then an encoder/decoder update.

Unsupervised (CAVGA-u, Eq. 4):  w_r * (L_R + KL) + w_adv * L_adv + u * w_ae * L_ae.
Weakly supervised (CAVGA-w, Eq. 6):  w_r * (L_R + KL) + w_adv * L_adv + u * (w_c * L_bce + w_cga * L_cga).
u is ``attention_weight_unit``: 3 x H x W by default, so the paper's weights hold per pixel.

In CAVGA-w the few anomalous training images carry image labels only.  They train the classifier
(L_bce) but not the VAE or the discriminator: L_R, KL and L_adv model the *normal* distribution, and
a VAE that learned to reconstruct defects, or a discriminator told that defects are "real", would
work against both.  L_cga, by Eq. 5, only ever sees correctly classified normal images.  The
classifier's BCE weighs each image by the inverse frequency of its class, since ~2% anomalous images
would otherwise teach C to answer "normal" always; as a weighted mean per batch, so over an epoch
the few anomalous images carry well under half of it (docs/method.md, the losses' table).

The loop around it (epochs, checkpoints, resume, restarts) is :mod:`cavga.train`.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from . import data as D
from . import distributed as dist
from .attention import (
    cam_peak,
    cam_peak_parts,
    class_maps,
    grad_cam_raw,
    normalise_cam,
    peak_from_parts,
    unsupervised_cam_raw,
)
from .config import RunConfig
from .losses import (
    adversarial_d_loss,
    adversarial_g_loss,
    attention_expansion_loss,
    classifier_loss,
    complementary_guided_attention_loss,
    kl_loss,
    reconstruction_loss,
)
from .networks import CAVGA, Discriminator, Encoding


def attention_weight_unit(cfg: RunConfig, x: Tensor) -> float:
    """What w_ae, w_c and w_cga are multiplied by: the number of reconstruction terms per image
    (3 x H x W) when Eq. 1 is summed over them and ``loss.per_pixel_weights`` is on, else 1.

    L_ae, L_bce and L_cga are means of order 1, while the summed L_R of one image adds up 3HW
    per-pixel terms; the paper's weights (0.01, 0.001, 0.01) read as weights per reconstruction
    term keep the balance the paper describes at any image size (docs/method.md)."""
    if cfg.loss.per_pixel_weights and cfg.loss.reduction == "sum":
        return float(x[0].numel())
    return 1.0


def generator_loss(
    model: CAVGA,
    disc: Discriminator,
    x: Tensor,
    labels: Tensor,
    enc: Encoding,
    x_hat: Tensor,
    cfg: RunConfig,
    class_weight: Tensor | None = None,
    valid: Tensor | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Eq. 4 (CAVGA-u) or Eq. 6 (CAVGA-w) for a batch already encoded and decoded; the total and its terms.

    ``valid`` (B, 1, S, S) marks image content (``data.resize``: pad or center): L_ae and L_cga then average
    over the attention cells by their share of content (``x_hat`` already carries the input's padding)."""
    w = cfg.loss
    normal = labels == 0  # (B,)
    zero = x.new_zeros(())
    terms: dict[str, Tensor] = {}
    if normal.any():
        terms["rec"] = reconstruction_loss(x[normal], x_hat[normal], w.reduction)
        terms["kl"] = kl_loss(enc.mu[normal], enc.logvar[normal], w.reduction)
        terms["adv"] = adversarial_g_loss(disc(x_hat[normal])) if w.w_adv > 0 else zero
    else:
        terms["rec"] = terms["kl"] = terms["adv"] = zero
        if dist.world_size() > 1:  # DDP needs a gradient, zero here, for the decoder and logvar head on every rank
            terms["rec"] = 0.0 * (x_hat.sum() + enc.logvar.sum())
    total = w.w_r * (terms["rec"] + w.w_kl * terms["kl"]) + w.w_adv * terms["adv"]
    unit = attention_weight_unit(cfg, x)

    if not cfg.model.weakly_supervised:
        cam = unsupervised_cam_raw(enc, model.cfg.attention_score)  # (B, 1, h, w)
        model.track_attention_peak(_global_peak(cam, normal))  # one scale on every rank
        if w.w_ae > 0:
            cells = None if valid is None else D.cell_weights(valid, cam.shape[-2:])  # (B, 1, h, w)
            terms["ae"] = attention_expansion_loss(normalise_cam(cam, model.attention_scale()), cells)
            total = total + unit * w.w_ae * terms["ae"]
    else:
        logits = model.classify(enc.z)  # (B, 2): C learns on the sampled z, as the decoder does
        terms["bce"] = classifier_loss(logits, labels, class_weight)
        total = total + unit * w.w_c * terms["bce"]
        # The class maps, and the prediction p that Eq. 5's indicator reads, come from z's mean, as
        # inference reads them: through the sampled z, d logit / dF would also run through the noise
        # times the log-variance head's gradient, a random map that inference never sees.
        mean_logits = model.classify(enc.score_mu)  # (B, 2): each image's from its own features
        cam_normal = grad_cam_raw(enc.features, mean_logits[:, 0])  # (B, 1, h, w)
        model.track_attention_peak(_global_peak(cam_normal, normal))
        if w.w_cga > 0:
            # A_cn clamped at the normal peak, A_ca unclamped: a clamp would leave its strongest cells no gradient
            a_normal, a_anomalous = class_maps(enc.features, mean_logits, model.attention_scale(), cam_normal)
            cells = None if valid is None else D.cell_weights(valid, cam_normal.shape[-2:])  # (B, 1, h, w)
            terms["cga"] = complementary_guided_attention_loss(a_normal, a_anomalous, mean_logits, labels, cells)
            total = total + unit * w.w_cga * terms["cga"]
    terms["total"] = total
    return total, terms


def train_step(
    model: CAVGA,
    disc: Discriminator,
    opt_g: torch.optim.Optimizer,
    opt_d: torch.optim.Optimizer,
    x: Tensor,
    labels: Tensor,
    cfg: RunConfig,
    class_weight: Tensor | None = None,
    valid: Tensor | None = None,
) -> dict[str, Tensor]:
    """One D update, then one encoder/decoder(/classifier) update, on a batch; the losses as 0-d
    tensors on the batch's device (no host sync here: the loop reads them once per log interval).

    ``valid`` (B, 1, S, S), 1 on content and 0 on padding (``data.resize``: pad or center): the input's
    padding is pasted into the reconstruction, so neither L_R nor D sees what the decoder draws there.

    ``model`` and ``disc`` may be DDP-wrapped (:mod:`cavga.distributed`): their ``backward`` then
    averages the gradients over the ranks."""
    enc, x_hat = model(x)  # encode, then decode z: (B, 3, S, S); through DDP's forward when wrapped
    x_hat = D.paste_padding(x_hat, x, valid)  # (B, 3, S, S): the padding is the input's
    normal = labels == 0
    d_loss = None

    # Discriminator: real normal images against their reconstructions (Eq. 2).
    if cfg.loss.w_adv > 0 and normal.any():
        d_loss = adversarial_d_loss(disc(x[normal]), disc(x_hat[normal].detach()))
    elif cfg.loss.w_adv > 0 and dist.world_size() > 1:
        # no normal image on this rank: zero gradients to all-reduce, and as many D forwards as the
        # other ranks make (each DDP forward broadcasts D's batch-norm buffers, a collective)
        d_loss = 0.0 * (disc(x).sum() + disc(x_hat.detach()).sum())
    if d_loss is not None:
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        opt_d.step()

    # Encoder, decoder (and classifier): Eq. 4 or Eq. 6 against the updated discriminator. D's own
    # weight gradients from this loss would be discarded by the next D step: not computed at all,
    # and D's forward bypasses DDP (nothing of it to all-reduce).
    model_, disc = dist.unwrap(model), dist.unwrap(disc)
    d_params = [p for p in disc.parameters() if p.requires_grad]
    for p in d_params:
        p.requires_grad_(False)
    try:
        total, terms = generator_loss(model_, disc, x, labels, enc, x_hat, cfg, class_weight, valid)
        opt_g.zero_grad(set_to_none=True)
        total.backward()
    finally:
        for p in d_params:
            p.requires_grad_(True)
    opt_g.step()
    if d_loss is not None:
        terms["disc"] = d_loss
    return {k: v.detach() for k, v in terms.items()}


def class_weight_of(records: list[D.Record], device: torch.device) -> Tensor | None:
    """L_bce's per-class weights, the inverse frequency of each class in ``records``; None with one class."""
    counts = np.bincount([r.label for r in records], minlength=2).astype(np.float64)
    if counts.min() == 0:
        return None
    return torch.tensor(counts.sum() / (2 * counts), dtype=torch.float32, device=device)


def make_optimizers(model: CAVGA, disc: Discriminator, cfg: RunConfig):
    """Two Adams: G's over the trainable encoder, decoder and classifier parameters, D's over D's."""
    # fused: one kernel per parameter instead of about six passes over it (Adam's update, the same
    # arithmetic). On 2 CPU cores an update of CAVGA-R's 21 M parameters took 97 ms looped, 26 ms
    # fused (benchmarks/adam_fused.py). A frozen encoder's parameters (requires_grad False) are left out of G's.
    kw = {"lr": cfg.train.lr, "betas": (cfg.train.beta1, cfg.train.beta2), "fused": True}
    opt_g = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], **kw)
    opt_d = torch.optim.Adam(disc.parameters(), **kw)
    return opt_g, opt_d


def _global_peak(cam: Tensor, normal: Tensor) -> Tensor:
    """The running scale's peak (cavga.attention.cam_peak) over the whole global batch: under DDP from
    the ranks' summed parts, so a shard with fewer (or no) normal images weighs what it holds."""
    if dist.world_size() == 1:
        return cam_peak(cam, normal)
    return peak_from_parts(dist.all_reduce_sum(cam_peak_parts(cam, normal)))
