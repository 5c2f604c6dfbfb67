"""Grad-CAM without autograd: the gradient of the attention score in closed form (for export).

With Grad-CAM taken at the map the latent is computed from (``model.attention_layer`` 0), mu is a
*linear* function of the features F: ``mu = W F + b`` (a 1x1 convolution, W (C, K)), or for the
flattened latent ``mu = M vec(F) + b`` (M (d, K h w)).  For a score S with g = dS/dmu,

    dS/dF = J^T g,   alpha_k = mean_ij (J^T g)_kij,   A = ReLU(sum_k alpha_k F_k)

and g is known in closed form for every score cavga uses:

    mu_sum, z_sum (z = mu at inference)   g = 1
    mu_energy (|mu|^2 / 2)                g = mu
    CAVGA-w, logit of class y             g = C's weight row y, reshaped like mu (A_ca: y = 1, A_cn: 0)
    per_channel                           one Grad-CAM per latent channel c with g = e_c, averaged after ReLU

So the attention is a forward-only graph (matmuls and a ReLU) that TorchScript tracing and ONNX
record; :func:`cavga.attention.grad_cam_raw` is the autograd reference it must equal.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..errors import CavgaError
from ..networks import CAVGA


class AnalyticGradCAM(nn.Module):
    """Raw Grad-CAM (B, 1, h, w) of a CAVGA in eval mode from its features and mu, gradient in closed form."""

    def __init__(self, model: CAVGA, score: str):
        super().__init__()
        check_exportable(model)
        self.flat = model.cfg.flat_latent
        self.score = score  # "mu_sum" | "mu_energy" | "per_channel" | "logit0" | "logit1"
        head = model.to_mu[1] if self.flat else model.to_mu
        w = head.weight.detach()
        # the linear map mu = J F: conv (C, K) or flat (d, K, h, w)
        self.register_buffer(
            "jac", w.reshape(w.shape[0], model.encoder.out_channels, -1) if self.flat else w[:, :, 0, 0]
        )
        if score in ("logit0", "logit1"):  # C's weight row for the class: A_cn or A_ca
            self.register_buffer("g_logit", model.classifier.weight.detach()[int(score[-1])])  # (numel(mu),)

    def _alpha(self, g: Tensor) -> Tensor:
        """alpha (B or 1, K) = mean_ij (J^T g) for g (B or 1, *mu shape)."""
        if self.flat:  # jac (d, K, hw): (J^T g)_kp = sum_d g_d M_dkp
            return torch.einsum("bd,dkp->bk", g.flatten(1), self.jac) / self.jac.shape[2]
        return g.mean(dim=(2, 3)) @ self.jac  # (B, C) @ (C, K) -> (B, K)

    def forward(self, features: Tensor, mu: Tensor) -> Tensor:
        if self.score == "per_channel":
            if self.flat:  # alpha_c = mean_p M_c, (d, K)
                alpha = self.jac.mean(dim=2)
            else:  # g = e_c at every place: alpha_c = W_c
                alpha = self.jac
            cams = torch.relu(torch.einsum("ck,bkij->bcij", alpha, features))  # (B, C, h, w)
            return cams.mean(dim=1, keepdim=True)  # (B, 1, h, w)
        if self.score == "mu_sum":
            g = torch.ones_like(mu[:1])  # (1, *mu shape)
        elif self.score == "mu_energy":
            g = mu  # (B, *mu shape)
        else:  # logit0, logit1
            g = self.g_logit.reshape(mu[:1].shape)  # (1, *mu shape)
        alpha = self._alpha(g)  # (B or 1, K)
        return torch.relu((alpha[:, :, None, None] * features).sum(dim=1, keepdim=True))  # (B, 1, h, w)


def check_exportable(model: CAVGA) -> None:
    """A one-line CavgaError where the attention has no closed-form gradient."""
    if model.cfg.attention_layer != 0:
        raise CavgaError(
            f"model.attention_layer {model.cfg.attention_layer}: Grad-CAM there runs back through encoder "
            "blocks, which has no closed form; only attention_layer 0 exports"
        )


def score_kind(model: CAVGA, weak_map: str = "anomalous") -> str:
    """Which closed form this model's attention uses (z_sum is mu_sum: z = mu at inference; CAVGA-w:
    the logit of the class whose attention ``weak_map`` uses)."""
    if model.cfg.weakly_supervised:
        return "logit0" if weak_map == "normal" else "logit1"
    kind = model.cfg.attention_score
    return "mu_sum" if kind == "z_sum" else kind
