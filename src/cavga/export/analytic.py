"""Grad-CAM without autograd: the gradient of the attention score in closed form (for export).

At the map the latent is computed from (``model.attention_layer`` 0), mu is a *linear* function of
the features F: ``mu = W F + b`` (a 1x1 convolution, W (C, K)), or for the flattened latent
``mu = M vec(F) + b`` (M (d, K h w)).  For a score S with g = dS/dmu,

    dS/dF = J^T g,   alpha_k = mean_ij (J^T g)_kij,   A = ReLU(sum_k alpha_k F_k)

and g is known in closed form for every score cavga uses:

    mu_sum, z_sum (z = mu at inference)   g = 1
    mu_energy (|mu|^2 / 2)                g = mu
    CAVGA-w, logit of class y             g = C's weight row y, reshaped like mu (A_ca: y = 1, A_cn: 0)
    per_channel                           one Grad-CAM per latent channel c with g = e_c, averaged after ReLU

With ``attention_layer`` k > 0, F lies k encoder blocks below that map and J^T g runs back through
them as well: :func:`.transpose.linearise` gives each block's transposed Jacobian at the image
(transposed convolutions, batch norm's scales, the activations' masks).  So the attention is a
forward-only graph that TorchScript tracing and ONNX record; :func:`cavga.attention.grad_cam_raw`
is the autograd reference it must equal.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..errors import CavgaError
from ..networks import CAVGA
from .transpose import check_linearisable, linearise


class AnalyticGradCAM(nn.Module):
    """Raw Grad-CAM (B, 1, h, w) of a CAVGA in eval mode, and mu, from the features Grad-CAM is
    taken at (:meth:`CAVGA.encode_features`), the gradient in closed form."""

    def __init__(self, model: CAVGA, score: str):
        super().__init__()
        check_exportable(model, score)
        self.flat = model.cfg.flat_latent
        self.score = score  # "mu_sum" | "mu_energy" | "per_channel" | "logit0" | "logit1"
        self.tail = model.encoder.body[model._split() :]  # the blocks between F and mu's map (none at layer 0)
        self.to_mu = model.to_mu
        head = model.to_mu[1] if self.flat else model.to_mu
        w = head.weight.detach()
        k = model.encoder.out_channels
        # the linear map mu = J top: conv (C, K) or flat (d, K, h, w)
        self.register_buffer("jac", w.reshape(w.shape[0], k, -1) if self.flat else w[:, :, 0, 0])
        if score in ("logit0", "logit1"):  # C's weight row for the class: A_cn or A_ca
            self.register_buffer("g_logit", model.classifier.weight.detach()[int(score[-1])])  # (numel(mu),)

    def _head_transpose(self, g: Tensor, top: Tensor) -> Tensor:
        """J^T g (B or 1, K, h, w) at the encoder's last map ``top`` for g (B or 1, *mu shape)."""
        if self.flat:  # jac (d, K, hw): (J^T g)_kp = sum_d g_d M_dkp
            return torch.einsum("bd,dkp->bkp", g.flatten(1), self.jac).reshape(-1, *top.shape[1:])
        return torch.einsum("bchw,ck->bkhw", g, self.jac)

    def forward(self, features: Tensor) -> tuple[Tensor, Tensor]:
        top, tail_transpose = linearise(self.tail, features)  # (B, K, h, w) the map mu is computed from
        mu = self.to_mu(top)  # (B, C, h, w) or (B, d)
        if self.score == "per_channel":  # attention_layer 0 only (check_exportable)
            if self.flat:  # alpha_c = mean_p M_c, (d, K)
                alpha = self.jac.mean(dim=2)
            else:  # g = e_c at every place: alpha_c = W_c
                alpha = self.jac
            cams = torch.relu(torch.einsum("ck,bkij->bcij", alpha, features))  # (B, C, h, w)
            return cams.mean(dim=1, keepdim=True), mu  # (B, 1, h, w)
        if self.score == "mu_sum":
            g = torch.ones_like(mu[:1])  # (1, *mu shape)
        elif self.score == "mu_energy":
            g = mu  # (B, *mu shape)
        else:  # logit0, logit1
            g = self.g_logit.reshape(mu[:1].shape)  # (1, *mu shape)
        alpha = tail_transpose(self._head_transpose(g, top)).mean(dim=(2, 3))  # (B or 1, K')
        cam = torch.relu((alpha[:, :, None, None] * features).sum(dim=1, keepdim=True))  # (B, 1, h', w')
        return cam, mu


def check_exportable(model: CAVGA, score: str) -> None:
    """A one-line CavgaError where the attention has no closed-form gradient here."""
    if model.cfg.attention_layer != 0 and score == "per_channel":
        raise CavgaError(
            f"model.attention_layer {model.cfg.attention_layer} with attention_score per_channel: one gradient "
            "per latent channel back through encoder blocks is not exported; only attention_layer 0 exports it"
        )
    check_linearisable(model.encoder.body[model._split() :])


def score_kind(model: CAVGA, weak_map: str = "anomalous") -> str:
    """Which closed form this model's attention uses (z_sum is mu_sum: z = mu at inference; CAVGA-w:
    the logit of the class whose attention ``weak_map`` uses)."""
    if model.cfg.weakly_supervised:
        return "logit0" if weak_map == "normal" else "logit1"
    kind = model.cfg.attention_score
    return "mu_sum" if kind == "z_sum" else kind
