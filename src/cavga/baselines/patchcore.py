"""A PatchCore-like reference (Roth et al. 2022; not part of the CAVGA paper).

Pretrained EfficientNet-Lite0 features at strides 8 (end of the 40-channel stage) and 16 (end of
the 112-channel stage), each averaged over 3x3 neighbourhoods, the stride-16 map upsampled
bilinearly to the stride-8 grid and concatenated: one 152-d vector per 8x8 patch.  The memory bank
is a greedy k-center coreset of the training patches (``coreset_fraction``, found on a random
projection).  A test patch's anomaly is the distance to its nearest bank vector; the map is
upsampled to the image and blurred (Gaussian, sigma 4); the image score is the map's maximum.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..attention import gaussian_blur
from ..backbones import EfficientNetLite0Encoder

FEATURE_STAGES = (3, 5)  # indices into the encoder body: [stem, stage 1, ..., stage 5]
FEATURE_DIM = 40 + 112


def patch_descriptors(maps: list[Tensor]) -> Tensor:
    """Feature maps of one batch, finest first, as one patch vector per position of the finest grid:
    each map averaged over 3x3 neighbourhoods, the coarser ones upsampled bilinearly onto the finest
    grid, all concatenated (B, sum C_i, h, w)."""
    pooled = [F.avg_pool2d(m, 3, stride=1, padding=1, count_include_pad=False) for m in maps]  # local 3x3 means
    grid = pooled[0].shape[-2:]  # (h, w)
    ups = [F.interpolate(p, size=grid, mode="bilinear", align_corners=False) for p in pooled[1:]]  # (B, C_i, h, w)
    return torch.cat([pooled[0], *ups], dim=1)  # (B, sum C_i, h, w)


class PatchFeatures(nn.Module):
    """Frozen Lite0 patch features (B, 152, S/8, S/8) of images in [0, 1]."""

    def __init__(self, weights: str = "imagenet", allow_random_init: bool = False):
        super().__init__()
        self.encoder = EfficientNetLite0Encoder(weights, allow_random_init, stride=16).eval()
        self.encoder.requires_grad_(False)

    def train(self, mode: bool = True) -> PatchFeatures:
        return super().train(False)  # batch norm keeps ImageNet statistics

    @torch.no_grad()
    def forward(self, x: Tensor) -> Tensor:
        h = self.encoder.prepare(x)  # (B, 3, S, S)
        maps = []
        for i, block in enumerate(self.encoder.body):
            h = block(h)
            if i in FEATURE_STAGES:
                maps.append(h)  # (B, 40, S/8, S/8), then (B, 112, S/16, S/16)
        return patch_descriptors(maps)  # (B, 152, S/8, S/8)


def greedy_coreset(features: Tensor, n: int, projection: int = 128, seed: int = 0) -> Tensor:
    """Indices (n,) of a greedy k-center coreset of ``features`` (N, D): each pick is the point
    farthest from those picked so far, starting from a seeded random point.  Distances are taken
    after a seeded Gaussian random projection to ``projection`` dimensions (none if 0 or >= D)."""
    g = torch.Generator().manual_seed(seed)
    z = features.float()
    if 0 < projection < z.shape[1]:
        proj = torch.randn(z.shape[1], projection, generator=g) / math.sqrt(projection)  # (D, P), on the CPU
        z = z @ proj.to(z.device)  # (N, P)
    n = min(n, len(z))
    sq = z.pow(2).sum(dim=1)  # (N,)
    picked = torch.empty(n, dtype=torch.long)
    picked[0] = int(torch.randint(len(z), (1,), generator=g))
    min_d = (sq - 2 * z @ z[picked[0]] + sq[picked[0]]).clamp_min(0)  # (N,) squared distance to the coreset
    for k in range(1, n):
        picked[k] = torch.argmax(min_d)
        d = (sq - 2 * z @ z[picked[k]] + sq[picked[k]]).clamp_min(0)  # (N,)
        torch.minimum(min_d, d, out=min_d)
    return picked


def nearest_distance(queries: Tensor, bank: Tensor, chunk: int = 4096) -> Tensor:
    """Euclidean distance (Q,) from each query (Q, D) to its nearest bank vector (M, D), in chunks."""
    out = []
    for i in range(0, len(queries), chunk):
        d = torch.cdist(queries[i : i + chunk], bank)  # (q, M)
        out.append(d.min(dim=1).values)
    return torch.cat(out)


class PatchCore(nn.Module):
    """Feature extractor + memory bank; ``distance_map`` gives the blurred 1-NN distance (B, S, S).

    ``map_scale`` (the held-out normals' highest map value) turns distances d into the reported map
    d / (d + map_scale) in [0, 1): monotone, so rankings are unchanged, and 0.5 means "as far as the
    farthest held-out normal pixel"."""

    def __init__(self, image_size: int, blur_sigma: float = 4.0, weights: str = "imagenet", allow_random_init=False):
        super().__init__()
        self.features = PatchFeatures(weights, allow_random_init)
        self.image_size = image_size
        self.blur_sigma = blur_sigma
        self.register_buffer("bank", torch.zeros(0, FEATURE_DIM))  # (M, 152)
        self.register_buffer("map_scale", torch.ones(()))

    def patches(self, x: Tensor) -> Tensor:
        """All patch vectors of a batch, (B * h * w, 152)."""
        f = self.features(x)  # (B, 152, h, w)
        return f.permute(0, 2, 3, 1).reshape(-1, f.shape[1])

    @torch.no_grad()
    def distance_map(self, x: Tensor) -> Tensor:
        f = self.features(x)  # (B, 152, h, w)
        b, c, h, w = f.shape
        d = nearest_distance(f.permute(0, 2, 3, 1).reshape(-1, c), self.bank).view(b, 1, h, w)  # (B, 1, h, w)
        d = F.interpolate(d, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False)
        return gaussian_blur(d[:, 0], self.blur_sigma)  # (B, S, S)

    def squash(self, d: Tensor) -> Tensor:
        return d / (d + self.map_scale)  # (B, S, S) in [0, 1)
