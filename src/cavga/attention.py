"""Differentiable Grad-CAM [49] on the encoder's feature map, the attention A of CAVGA.

``grad_cam(features, score)``:  alpha_k = mean_ij d score / d features_kij,
A = ReLU(sum_k alpha_k * features_k), brought into [0, 1] by a running scale (``model.attention_norm``,
"Normalisation" below; per image maximum as an option).
The gradient is taken with ``create_graph=True``, so a loss on A (L_ae, Eq. 3; L_cga, Eq. 5)
back-propagates into the encoder, the latent heads and (for CAVGA-w) the classifier.

Which score? (the paper leaves the unsupervised case open)
    * CAVGA-u: ``model.attention_score`` (:data:`ATTENTION_SCORES`, below): ``sum(mu)``, the
      gradient-based attention "from the latent space" of ADVAE [32], or ``|mu|^2 / 2``, whose
      channel weights are the image's own mean latent; ``auto`` takes the second on a frozen
      encoder, the first otherwise (docs/method.md, "Attention").
    * CAVGA-w: the classifier's logit for the class (normal or anomalous), as in Grad-CAM proper.
      C is linear in the flattened z and z's mean a 1x1 convolution of the last feature map, so at
      ``attention_layer`` 0 its alpha is the same for every image, as Grad-CAM's is on a classifier
      that pools its last features into one linear layer (the CAM of Zhou et al.): the class maps
      are a learnt linear read-out of F, image-dependent only through F itself. The logits are C of
      z's mean, in training too (cavga.step.generator_loss): the sampled z would add its noise.

Normalisation.  Grad-CAM is usually divided by each image's own maximum, for display.  For anomaly
localisation that is unsound: every image, a defect-free one too, then has a region at 1, and maps
of different images are on different scales, though a fixed 0.5 threshold and the pooled pixel
AUROC both compare them.  So ``model.attention_norm = "running"`` (the default) divides by a
constant instead: the running mean, over training batches, of the per-image peak of the raw map
(``CAVGA.cam_scale``, updated like batch-norm statistics and saved with the model), and clamps to
[0, 1].  Normal regions are pushed to the normal peak by L_ae; a region whose features drive the
latent less than normal ones do falls below it, whatever the rest of the image does.  For CAVGA-w
both class maps use the normal-class map's running peak, so A_cn and A_ca share one unit and
L_cga cannot shrink A_ca by shrinking its own scale; L_cga reads A_ca unclamped in that unit
(:func:`scale_free_cam`), so its cells above the normal peak are shrunk too.  ``"image"`` restores
per-image maxima.
Where a map is read the direct way (CAVGA-u's A where the attention rises on defects, CAVGA-w's
A_ca), the values above the normal peak are the anomalies, so inference reads them unclamped
(:func:`unsaturated_cam`).

Where? ``features`` is the encoder's last feature map, the map z's mean and variance are computed
from ("the feature representation of the latent variable", Sec. 3.1); it has z's spatial grid.
Each image's score depends only on its own features, so summing scores over the batch gives every
image its own gradient. At layer 0 no batch norm sits between the features and mu or the logits;
below z (``attention_layer`` >= 1) the encoder's top blocks hold batch norm, which in training
normalises by the batch's statistics, and the score is then read from ``Encoding.score_mu``: the
same values, with those statistics held as constants (:meth:`cavga.networks.CAVGA.latent`; before
session 73 the maps L_ae and L_cga trained on there mixed the batch's images).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

EPS = 1e-8


def grad_cam_raw(features: Tensor, score: Tensor, create_graph: bool = True) -> Tensor:
    """Unnormalised Grad-CAM, ReLU(sum_k alpha_k F_k), (B, 1, h, w), of per-image ``score`` (B,)."""
    (grads,) = torch.autograd.grad(score.sum(), features, create_graph=create_graph)  # (B, K, h, w)
    alpha = grads.mean(dim=(2, 3), keepdim=True)  # (B, K, 1, 1)
    return torch.relu((alpha * features).sum(dim=1, keepdim=True))  # (B, 1, h, w)


def normalise_cam(cam: Tensor, scale: Tensor | float | None = None) -> Tensor:
    """Map a raw Grad-CAM into [0, 1]: by a fixed ``scale`` (clamped), or by each image's own peak."""
    if scale is None:
        return cam / (cam.amax(dim=(2, 3), keepdim=True) + EPS)  # (B, 1, h, w)
    return (cam / (scale + EPS)).clamp(0.0, 1.0)  # (B, 1, h, w)


def unsaturated_cam(cam: Tensor, scale: Tensor | float | None = None) -> Tensor:
    """A raw Grad-CAM in [0, 1) without the clamp: s / (1 + s), s = cam / ``scale``; per-image peaks without one.

    For a map read the direct way (CAVGA-u's A where the attention rises on defects), the values
    above the normal peak are the anomalies, and the clamp of :func:`normalise_cam` flattens them
    all to 1: ties exactly where a ranking or a mask threshold needs order. s / (1 + s) is strictly
    increasing, puts the running normal peak (s = 1) at 0.5 and keeps every value apart."""
    if scale is None:
        return normalise_cam(cam, None)  # (B, 1, h, w): nothing lies above an image's own peak
    s = cam / (scale + EPS)  # (B, 1, h, w)
    return s / (1.0 + s)


def scale_free_cam(cam: Tensor, scale: Tensor | float | None = None) -> Tensor:
    """A raw Grad-CAM in units of the running normal peak, s = cam / ``scale``, unclamped (each
    image's own peak without one): what :func:`departure` compares with the normal level."""
    if scale is None:
        return normalise_cam(cam, None)  # (B, 1, h, w)
    return cam / (scale + EPS)  # (B, 1, h, w)


def departure(s: Tensor, level: Tensor) -> Tensor:
    """The attention's departure from its normal level, either way, in [0, 1): d / (1 + d) with
    d = |s - ``level``|, s (B, 1, S, S) from :func:`scale_free_cam` upsampled, ``level`` (S, S) the
    median of s at each pixel over held-out normal images (``infer.attention_direction: two_sided``).

    1 - A finds defects that lower the attention and A those that raise it; on MTD's painted
    defects stains do the one and scratches the other (docs/method.md, "Direction of the
    unsupervised map"). Measured against each pixel's own normal level, an aligned object's parts
    with their own normal attention (bottle's rim and background) are not departures."""
    d = (s - level).abs()  # (B, 1, S, S)
    return d / (1.0 + d)


def grad_cam(features: Tensor, score: Tensor, scale: Tensor | float | None = None, create_graph: bool = True) -> Tensor:
    """Grad-CAM map in [0, 1], (B, 1, h, w), of per-image ``score`` (B,) w.r.t. ``features`` (B, K, h, w)."""
    return normalise_cam(grad_cam_raw(features, score, create_graph), scale)


def class_maps(
    features: Tensor, logits: Tensor, scale: Tensor | float | None, cam_normal: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Eq. 5's A_cn and A_ca (B, 1, h, w) from C's ``logits`` (B, 2) on z's mean: A_cn clamped at the normal
    peak ``scale`` (L_cga raises it to that peak, no further), A_ca unclamped in the same unit (L_cga shrinks
    it everywhere, its cells above the peak too). ``cam_normal``: A_cn's raw Grad-CAM, where already taken."""
    cam_normal = grad_cam_raw(features, logits[:, 0]) if cam_normal is None else cam_normal  # (B, 1, h, w)
    return normalise_cam(cam_normal, scale), scale_free_cam(grad_cam_raw(features, logits[:, 1]), scale)


def cam_peak(cam: Tensor, normal: Tensor | None = None) -> Tensor:
    """Mean per-image peak of a raw Grad-CAM, detached, over the ``normal`` (B,) images when there
    are any: what the running scale tracks."""
    if normal is not None and normal.any():
        cam = cam[normal]
    return cam.detach().amax(dim=(2, 3)).mean()


def cam_peak_parts(cam: Tensor, normal: Tensor) -> Tensor:
    """(4,) what :func:`cam_peak` averages, as sums that add up over shards of a batch: the per-image
    peaks' sum and count over the ``normal`` (B,) images, then over all images."""
    peaks = cam.detach().amax(dim=(2, 3)).flatten()  # (B,)
    weights = normal.to(peaks.dtype)  # (B,)
    return torch.stack([(peaks * weights).sum(), weights.sum(), peaks.sum(), peaks.new_tensor(float(len(peaks)))])


def peak_from_parts(parts: Tensor) -> Tensor:
    """:func:`cam_peak` of the batch whose (summed) :func:`cam_peak_parts` are ``parts``: the normal
    images' mean peak where there are any, else all images' (without a host sync)."""
    return torch.where(parts[1] > 0, parts[0] / parts[1].clamp_min(1), parts[2] / parts[3].clamp_min(1))


def latent_score(mu: Tensor) -> Tensor:
    """The sum of the latent mean per image, (B,): the "mu_sum" score."""
    return mu.flatten(1).sum(dim=1)


def latent_energy(mu: Tensor) -> Tensor:
    """Half the squared norm of the latent mean per image, (B,): the "mu_energy" score."""
    return 0.5 * mu.flatten(1).pow(2).sum(dim=1)


# CAVGA-u's choices of what Grad-CAM differentiates (``model.attention_score``):
#   mu_sum      sum(mu).  With attention_layer 0 and mu a 1x1 convolution of the features, d score / dF
#               is the same at every pixel of every image: A is then a fixed linear read-out of F.
#   z_sum       sum(z), z the reparameterised sample: as mu_sum plus the sampled noise term.
#   mu_energy   |mu|^2 / 2.  d score / dF_ij = W^T mu_ij, so alpha = W^T mean_ij(mu_ij) and
#               A_ij = ReLU(mean(mu) . (mu_ij - b)): how far each place's latent agrees with the
#               image's own mean latent, an image-dependent map.
#   per_channel one Grad-CAM per latent channel c (score sum_ij mu_c), each after its ReLU, averaged
#               over channels (ADVAE [32]).
ATTENTION_SCORES = ("mu_sum", "z_sum", "mu_energy", "per_channel")


def per_channel_cam_raw(features: Tensor, mu: Tensor, create_graph: bool = True) -> Tensor:
    """Mean over latent channels c of ReLU(Grad-CAM of sum_ij mu_c), (B, 1, h, w) (ADVAE [32])."""
    per_c = mu.flatten(2).sum(dim=2) if mu.dim() > 2 else mu  # (B, C)
    n = per_c.shape[1]
    eye = torch.eye(n, dtype=per_c.dtype, device=per_c.device)[:, None, :].expand(n, per_c.shape[0], n)  # (C, B, C)
    (grads,) = torch.autograd.grad(
        per_c, features, grad_outputs=eye, is_grads_batched=True, create_graph=create_graph
    )  # (C, B, K, h, w)
    alpha = grads.mean(dim=(3, 4), keepdim=True)  # (C, B, K, 1, 1)
    return torch.relu((alpha * features[None]).sum(dim=2)).mean(dim=0)[:, None]  # (B, 1, h, w)


def unsupervised_cam_raw(enc, kind: str, create_graph: bool = True) -> Tensor:
    """CAVGA-u's raw Grad-CAM, (B, 1, h, w), for an ``Encoding`` and a score of ATTENTION_SCORES."""
    if kind == "per_channel":
        return per_channel_cam_raw(enc.features, enc.score_mu, create_graph)
    score = {
        "mu_sum": lambda: latent_score(enc.score_mu),
        "z_sum": lambda: latent_score(enc.score_z),
        "mu_energy": lambda: latent_energy(enc.score_mu),
    }[kind]()  # (B,): each image's from its own features (cavga.networks.CAVGA.latent)
    return grad_cam_raw(enc.features, score, create_graph)


def upsample(attention: Tensor, size: int | tuple[int, int]) -> Tensor:
    """Bilinear upsampling of (B, 1, h, w) maps to the image size."""
    return torch.nn.functional.interpolate(attention, size=size, mode="bilinear", align_corners=False)


def gaussian_blur(maps: Tensor, sigma: float, side: int | None = None) -> Tensor:
    """Separable Gaussian blur of (B, H, W) maps, kernel 2 * ceil(4 sigma) + 1, reflected edges
    (scipy.ndimage.gaussian_filter with mode "mirror", truncate 4). ``side``: the maps' smaller side,
    where the caller knows it (a traced export, whose shapes are tensors)."""
    if sigma <= 0:
        return maps
    side = min(maps.shape[-2:]) if side is None else side
    r = min(math.ceil(4 * sigma), side - 1)
    t = torch.arange(-r, r + 1, dtype=maps.dtype, device=maps.device)
    k = torch.exp(-(t**2) / (2 * sigma**2))
    k = k / k.sum()
    h = torch.nn.functional.pad(maps[:, None], (r, r, r, r), mode="reflect")  # (B, 1, H + 2r, W + 2r)
    h = torch.nn.functional.conv2d(h, k.view(1, 1, 1, -1))  # (B, 1, H + 2r, W)
    h = torch.nn.functional.conv2d(h, k.view(1, 1, -1, 1))  # (B, 1, H, W)
    return h[:, 0]


def content_blur(maps: Tensor, sigma: float, valid: Tensor | None = None, side: int | None = None) -> Tensor:
    """:func:`gaussian_blur` of (B, H, W) maps that never sees the padding: within each image's content
    (``valid`` (B, 1, H, W), ``data.resize`` pad or center) the normalised convolution
    blur(map * valid) / blur(valid), a weighted mean of content pixels only; the padding keeps its
    values. Without ``valid`` (stretch), :func:`gaussian_blur` itself."""
    if valid is None or sigma <= 0:
        return gaussian_blur(maps, sigma, side)
    v = valid[:, 0].to(maps)  # (B, H, W)
    blurred = gaussian_blur(maps * v, sigma, side) / gaussian_blur(v, sigma, side).clamp_min(EPS)  # (B, H, W)
    return torch.where(v > 0, blurred, maps)


def image_map(amap: Tensor, size: int, blur: float = 0.0, valid: Tensor | None = None) -> Tensor:
    """A map (B, 1, h, w) as it is read at the model's resolution, (B, S, S) in [0, 1]: upsampled
    bilinearly, blurred by a Gaussian of ``blur`` pixels (``infer.map_blur``) within each image's
    content (``valid`` (B, 1, S, S) where ``data.resize`` pads: :func:`content_blur`) and clamped.

    Why blur: a Grad-CAM is one value per latent cell (16 px at 128 px and stride 16), so even
    upsampled, or averaged over half-cell shifts, its level sets keep the grid's corners and a
    defect's region comes out as a union of cells. A blur of a quarter cell rounds them, the
    post-processing the field's patch-feature methods apply to their maps (PatchCore, PaDiM:
    sigma 4 px); on painted defects it raised IoU by 0.01-0.02 at an unchanged pixel AUROC, on
    bottle's real ones it left pixel AUROC and AUPRO as they were and IoU went either way
    (docs/results.md, "Session 38")."""
    return content_blur(upsample(amap, size)[:, 0], blur, valid, size).clamp(0, 1)


def half_cell_average(map_of, x: Tensor, first: Tensor, half: int | None = None, views: int = 2) -> Tensor:
    """The map of ``x`` (B, 3, S, S) averaged over the image shifted by half a latent cell, (B, 1, S, S).

    A Grad-CAM has z's grid: at 128 px and stride 16, 8x8 cells, each one value however the defect
    falls in it. ``map_of(v)`` (a batch -> (B, 1, h, w)) is read again on ``x`` moved right, down,
    and both, by half a cell (its edge reflected in), and each map moved back; a pixel averages
    the views that saw it (``first``, the unshifted map, sees all). The cell centres of the four
    views interleave, so the average has twice the grid's resolution in each direction. ``half``:
    half a cell in pixels, where the caller knows it (a traced export, whose shapes are tensors).
    ``views``: shifts per direction, by 1/views of a cell each (views**2 maps in all); 2 is
    ``infer.shifted_map``; 3 and 4 were no better on average over six runs' painted checks
    (benchmarks/shift_views_probe.py)."""
    s = x.shape[-1]
    cell = s // first.shape[-1] if half is None else 2 * half  # a latent cell, in pixels
    total = upsample(first, s)  # (B, 1, S, S)
    if cell < views:
        return total
    count = torch.ones_like(total[:1])  # (1, 1, S, S) views per pixel
    for dy, dx in [(i * cell // views, j * cell // views) for i in range(views) for j in range(views)][1:]:
        moved = torch.nn.functional.pad(x, (dx, 0, dy, 0), mode="reflect")[..., :s, :s]  # (B, 3, S, S)
        seen = upsample(map_of(moved), s)[..., dy:, dx:]  # (B, 1, S - dy, S - dx) at the image's pixels
        total = total + torch.nn.functional.pad(seen, (0, dx, 0, dy))  # (B, 1, S, S), 0 where unseen
        count = count + torch.nn.functional.pad(torch.ones_like(seen[:1]), (0, dx, 0, dy))
    return total / count  # (B, 1, S, S)


ENLARGEMENT = 2  # infer.enlarged_map: the image read again at this many times its size


def enlarged_average(map_of, x: Tensor, first: Tensor, size: int | None = None) -> Tensor:
    """The map of ``x`` (B, 3, S, S) averaged with the map of ``x`` enlarged ENLARGEMENT times
    (bilinearly), on the enlarged map's grid, (B, 1, 2h, 2w).

    A fully convolutional encoder reads the enlarged image at the same layer with a grid twice as
    fine (16x16 cells at 128 px and stride 16, each seeing a part of the image twice as large), so
    the average keeps the image's own view and adds one that places a defect to half a cell.
    ``map_of(v)`` (a batch -> (B, 1, h', w')) is read on the enlarged image; ``first`` is the map of
    ``x`` itself. ``size``: the enlarged side in pixels, where the caller knows it (a traced export,
    whose shapes are tensors)."""
    side = ENLARGEMENT * x.shape[-1] if size is None else size
    big = torch.nn.functional.interpolate(x, size=(side, side), mode="bilinear", align_corners=False)  # (B, 3, 2S, 2S)
    fine = map_of(big)  # (B, 1, 2h, 2w)
    return 0.5 * (upsample(first, fine.shape[-2:]) + fine)  # (B, 1, 2h, 2w)
