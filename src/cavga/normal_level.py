"""The unsupervised attention's normal level at each pixel, for ``infer.attention_direction: two_sided``.

The map "two_sided" reads A's departure, either way, from what A is at that pixel on normal images
(:func:`cavga.attention.departure`). That level is the median, at each pixel of the model's
resolution, of A in the running peak's units over the held-out normal images (the ones the mask
threshold and the score normaliser are fitted on; never a test image), read as the map is (averaged
over half-cell shifts and the enlarged image where the run does so), before the blur. Padding
(``data.resize`` pad or center) does not count: a pixel's median is over the images whose content
covers it (0 where none does). Training's end stores it in the checkpoint (``attention_level``) for
every CAVGA-u run, so a run decided otherwise can still be read two-sided.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .attention import departure, upsample
from .evidence import anomaly_evidence
from .networks import CAVGA

LEVEL_KEY = "attention_level"  # the checkpoint's key: (S, S) float32


@torch.no_grad()
def median_level(s: Tensor, valid: Tensor | None = None) -> Tensor:
    """Each pixel's median of ``s`` (N, S, S) over the images whose content covers it (``valid``
    (N, S, S) bool, None: all), (S, S); 0 where no image does."""
    if valid is not None:
        s = s.masked_fill(~valid, float("nan"))
    return torch.nan_to_num(s.nanmedian(dim=0).values, nan=0.0)  # (S, S)


def scale_free_maps(model: CAVGA, x: Tensor, shifted: bool, enlarged: bool) -> Tensor:
    """A in the running peak's units (:func:`cavga.attention.scale_free_cam`), read as the map is, at
    the image's size: (B, S, S)."""
    amap = anomaly_evidence(model, x, "scale_free", shifted=shifted, enlarged=enlarged)[0]  # (B, 1, h', w')
    return upsample(amap, x.shape[-1])[:, 0]  # (B, S, S)


def fit_level(model: CAVGA, batches, device, shifted: bool, enlarged: bool) -> Tensor | None:
    """The normal level (S, S) over ``batches`` of normal images (the held-out ones, as
    :func:`cavga.inference.eval_loader` yields them: ``image``, ``valid``); None without any."""
    maps, valid = [], []
    for batch in batches:
        s = scale_free_maps(model, batch.image.to(device), shifted, enlarged).cpu()  # (B, S, S)
        maps.append(s)
        valid.append(torch.ones_like(s, dtype=torch.bool) if batch.valid is None else batch.valid[:, 0] > 0.5)
    return median_level(torch.cat(maps), torch.cat(valid)).float() if maps else None


def held_out_departures(
    model: CAVGA, x: Tensor, n: int, batch_size: int, device, shifted, enlarged, valid: Tensor | None = None
) -> Tensor:
    """The two-sided maps (M, 1, S, S) of a painted set ``x`` (M, 3, S, S) whose first ``n`` images are
    the clean held-out normals and the rest painted copies of them in the same order (``M = n (1 +
    copies)``; :func:`cavga.painting.paint_validation_set`): image k, clean or painted, is read against
    the level of the other n - 1 clean images, so no map is scored against a level its own clean
    image helped fit (a median of these very images would favour the two-sided map in a choice).
    ``valid`` (M, 1, S, S) marks content where any image is padded."""
    s = _scale_free_batched(model, x, batch_size, device, shifted, enlarged)  # (M, S, S)
    levels = leave_one_out_levels(s[:n], None if valid is None else valid[:n])  # (n, S, S)
    source = torch.arange(len(x)) % n  # (M,) the held-out image each one was painted on
    return departure(s[:, None], levels[source][:, None])  # (M, 1, S, S)


def held_out_levels(
    model: CAVGA, images: Tensor, batch_size: int, device, shifted, enlarged, valid: Tensor | None = None
) -> Tensor:
    """For each of the held-out normals ``images`` (n, 3, S, S), the level of the other n - 1, (n, S, S)
    (:func:`leave_one_out_levels`; ``valid`` (n, 1, S, S) their content where any is padded)."""
    s = _scale_free_batched(model, images, batch_size, device, shifted, enlarged)  # (n, S, S)
    return leave_one_out_levels(s, valid)


def leave_one_out_levels(s: Tensor, valid: Tensor | None = None) -> Tensor:
    """For each of n clean images' ``s`` (n, S, S), the median level of the other n - 1, (n, S, S)."""
    n = len(s)
    inside = torch.ones_like(s, dtype=torch.bool) if valid is None else valid[:, 0].cpu() > 0.5  # (n, S, S)
    others = [torch.cat([torch.arange(j), torch.arange(j + 1, n)]) for j in range(n)]
    return torch.stack([median_level(s[o], inside[o]) for o in others])  # (n, S, S)


def _scale_free_batched(model: CAVGA, x: Tensor, batch_size: int, device, shifted, enlarged) -> Tensor:
    """:func:`scale_free_maps` of ``x`` (M, 3, S, S), one batch on the device at a time: (M, S, S) on the CPU."""
    b = batch_size
    return torch.cat(
        [scale_free_maps(model, x[i : i + b].to(device), shifted, enlarged).cpu() for i in range(0, len(x), b)]
    )
