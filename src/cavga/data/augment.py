"""Training-time augmentation by the symmetries of the square (``train.augment``).

The paper trains on the images as they are (``none``, the default). Many inspection images have no
preferred orientation: a bottle seen from above, a tile, a fabric; for those every flip and quarter
turn of a good image is another good image, and a VAE trained from scratch on ~200 of them sees up
to eight times as many. ``flips`` draws one of the four mirrorings per image (none, left-right,
up-down, both); ``dihedral`` one of the eight symmetries of the square (the flips, each with or
without a transpose: every rotation by a multiple of 90 degrees and every mirroring). Objects with
an orientation (a transistor on its board, a screw's thread direction) would learn wrong normals
from them: that is a user's call, or a validation's (docs/method.md, "Augmentation").

Each image gets its own draw, from a generator seeded by the run's seed, the epoch and the process
rank, so a resumed run repeats the same draws. The padding mask (``data.resize: pad``) moves with
its image.
"""

from __future__ import annotations

import torch

from ..config import AUGMENTS

N_TRANSFORMS = dict(zip(AUGMENTS, (1, 4, 8), strict=True))  # train.augment: how many symmetries it draws from


def square_symmetry(x: torch.Tensor, code: int) -> torch.Tensor:
    """Transform ``code`` in 0..7 of the last two (square) axes: bit 0 flips left-right, bit 1 up-down,
    bit 2 transposes (applied in that order). Codes 0..3 are the mirrorings, 4..7 add the turns."""
    if code & 1:
        x = x.flip(-1)
    if code & 2:
        x = x.flip(-2)
    if code & 4:
        x = x.transpose(-1, -2)
    return x


def augment_batch(
    images: torch.Tensor, valid: torch.Tensor | None, mode: str, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Each image of the batch (and its padding mask) under one random symmetry of ``mode``."""
    n = N_TRANSFORMS[mode]
    if n == 1:
        return images, valid
    codes = torch.randint(n, (images.shape[0],), generator=generator)  # (B,) on the CPU
    out_images, out_valid = images.clone(), None if valid is None else valid.clone()  # (B, C, S, S), (B, 1, S, S)
    for code in codes.unique().tolist():
        idx = (codes == code).nonzero().squeeze(1).to(images.device)
        out_images[idx] = square_symmetry(images[idx], code)
        if out_valid is not None:
            out_valid[idx] = square_symmetry(valid[idx], code)
    return out_images, out_valid


def epoch_generator(seed: int, epoch: int, rank: int = 0) -> torch.Generator:
    """The augmentation draws of one epoch on one process: the same after a resume."""
    return torch.Generator().manual_seed(seed * 100_003 + epoch * 1_009 + rank * 7_919 + 17)
