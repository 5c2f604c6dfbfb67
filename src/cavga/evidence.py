"""What the network says about a batch of images: the anomalous attention map, the reconstruction and
CAVGA-w's anomalous probability (Sec. 3.1, 3.2), in eval mode. Every map and score a run stores or reports
(held-out statistics, validation, evaluation, prediction) comes through :func:`anomaly_evidence`."""

from __future__ import annotations

import torch
from torch import Tensor

from .attention import (
    departure,
    enlarged_average,
    grad_cam,
    grad_cam_raw,
    half_cell_average,
    normalise_cam,
    scale_free_cam,
    unsaturated_cam,
    unsupervised_cam_raw,
    upsample,
)
from .errors import CavgaError
from .networks import CAVGA

# The layout anomaly_evidence runs the network in (benchmarks/inference_layout.py compares the two).
MEMORY_FORMAT = torch.channels_last


def anomaly_evidence(
    model: CAVGA,
    x: Tensor,
    direction: str = "inverse",
    weak_map: str = "anomalous",
    shifted: bool = False,
    enlarged: bool = False,
    level: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor | None]:
    """Forward pass in eval mode: (anomalous attention map (B, 1, h, w), reconstruction, C's p_anomalous or None).

    ``direction`` (CAVGA-u only): "inverse" is the paper's 1 - A; "direct" reports A itself, for
    runs whose validation shows the attention rising on defects (``infer.attention_direction``),
    unclamped above the running peak (:func:`cavga.attention.unsaturated_cam`): there lie the defects.
    "two_sided" reports A's departure either way from ``level`` (S, S), its normal level at each
    pixel (:func:`cavga.attention.departure`; :mod:`cavga.normal_level`), at the image's size
    (B, 1, S, S): the shifted and enlarged views average A in the running peak's units before it.
    "scale_free" returns that A in the running peak's units itself, unclamped (what the level is fitted on).
    ``weak_map`` (CAVGA-w only): "anomalous" is the paper's A_ca, unclamped like the direct A;
    "normal" is 1 - A_cn (``infer.weak_map``).

    The batch is laid out channels_last (``MEMORY_FORMAT``): on a CPU prediction then runs 20-40%
    faster (docs/performance.md), the same arithmetic in another order, shared by every map and score
    (all come through here).

    ``shifted`` (``infer.shifted_map``): the map is averaged over the image shifted by half a latent
    cell (:func:`cavga.attention.half_cell_average`) and comes back at the image's size (B, 1, S, S);
    the reconstruction and C's probability stay those of the image as it is.

    ``enlarged`` (``infer.enlarged_map``, CAVGA-u): each map is averaged with the map of the image
    enlarged twofold (:func:`cavga.attention.enlarged_average`), on a grid twice as fine; with
    ``shifted`` too, every shifted view is so averaged."""
    model.eval()

    def plain(v: Tensor) -> Tensor:
        return _attention(model, v, direction, weak_map)[0]  # (B, 1, h, w)

    def map_of(v: Tensor, first: Tensor | None = None) -> Tensor:
        first = plain(v) if first is None else first  # (B, 1, h, w)
        return enlarged_average(plain, v, first) if enlarged else first  # (B, 1, 2h, 2w) enlarged

    if direction == "two_sided" and level is None:
        raise CavgaError("infer.attention_direction two_sided needs the attention's normal level (cavga.normal_level)")
    amap, mu, p_anomalous = _attention(model, x, direction, weak_map)
    amap = map_of(x, amap)  # (B, 1, h, w), or (B, 1, 2h, 2w) enlarged
    if shifted:
        amap = half_cell_average(map_of, x, amap)  # (B, 1, S, S)
    if direction == "two_sided" and not model.cfg.weakly_supervised:
        amap = departure(upsample(amap, x.shape[-1]), level.to(amap.device))  # (B, 1, S, S)
    with torch.inference_mode():  # only the attention needs gradients
        x_hat = model.decode(mu)  # (B, 3, S, S)
    return amap, x_hat, p_anomalous


def _attention(model: CAVGA, x: Tensor, direction: str, weak_map: str) -> tuple[Tensor, Tensor, Tensor | None]:
    """The anomalous map (B, 1, h, w), mu and C's p_anomalous (or None) of ``anomaly_evidence``."""
    x = x.contiguous(memory_format=MEMORY_FORMAT)  # (B, 3, S, S)
    with torch.no_grad():  # Grad-CAM differentiates from the feature map up: no graph below it
        features = model.encode_features(x)  # (B, K, h, w)
    with torch.enable_grad():
        features.requires_grad_(True)
        enc = model.latent(features)
        if model.cfg.weakly_supervised:
            logits = model.classify(enc.mu)  # (B, 2)
            if weak_map == "normal":  # 1 - A_cn
                anomalous_map = 1 - grad_cam(features, logits[:, 0], model.attention_scale(), create_graph=False)
            else:  # A_ca, every value above the normal peak kept apart (as CAVGA-u's direct A)
                raw = grad_cam_raw(features, logits[:, 1], create_graph=False)  # (B, 1, h, w)
                anomalous_map = unsaturated_cam(raw, model.attention_scale())
            p_anomalous = torch.softmax(logits.detach(), dim=1)[:, 1]  # (B,)
        else:
            raw = unsupervised_cam_raw(enc, model.cfg.attention_score, create_graph=False)  # (B, 1, h, w)
            if direction == "inverse":  # 1 - A
                anomalous_map = 1 - normalise_cam(raw, model.attention_scale())
            elif direction in ("two_sided", "scale_free"):  # A in the running peak's units (two_sided: then
                # compared with its level, below)
                anomalous_map = scale_free_cam(raw, model.attention_scale())
            else:  # A, every value above the normal peak kept apart
                anomalous_map = unsaturated_cam(raw, model.attention_scale())
            p_anomalous = None
    return anomalous_map.detach(), enc.mu.detach(), p_anomalous
