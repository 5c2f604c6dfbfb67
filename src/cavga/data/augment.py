"""Training-time augmentation by the symmetries of the square (``train.augment``).

The paper trains on the images as they are (``none``, the default). Many inspection images have no
preferred orientation: a bottle seen from above, a tile, a fabric; for those every flip and quarter
turn of a good image is another good image, and a VAE trained from scratch on ~200 of them sees up
to eight times as many. ``flips`` draws one of the four mirrorings per image (none, left-right,
up-down, both); ``dihedral`` one of the eight symmetries of the square (the flips, each with or
without a transpose: every rotation by a multiple of 90 degrees and every mirroring). Objects with
an orientation (a transistor on its board, a screw's thread direction) would learn wrong normals
from them: that is a user's call, or a validation's (docs/method.md, "Augmentation").

``shift`` moves each image by up to a sixteenth of its side in each direction (8 px at 128 px:
half a cell of the stride-16 latent grid), its edge reflected in. A model trained at one position
of the grid answers differently when an image falls half a cell over, which an inference that
averages half-cell shifts of the map (``infer.shifted_map``) relies on not happening.

Each image gets its own draw, from a generator seeded by the run's seed, the epoch and the process
rank, so a resumed run repeats the same draws. The padding mask (``data.resize: pad``) moves with
its image.
"""

from __future__ import annotations

import torch

N_TRANSFORMS = {"none": 1, "flips": 4, "dihedral": 8}  # train.augment: how many symmetries it draws from
SHIFT_FRACTION = 16  # train.augment "shift": up to side // SHIFT_FRACTION pixels each way


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
    """Each image of the batch (and its padding mask) under one random symmetry or shift of ``mode``."""
    if mode == "shift":
        d = images.shape[-1] // SHIFT_FRACTION
        offsets = torch.randint(2 * d + 1, (images.shape[0], 2), generator=generator).tolist()  # (B, 2)
        return shift_each(images, offsets, d), None if valid is None else shift_each(valid, offsets, d)
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


def shift_each(x: torch.Tensor, offsets: list[list[int]], d: int) -> torch.Tensor:
    """Image i of ``x`` (B, C, S, S) moved by ``d - offsets[i]`` pixels (down, right), its edge reflected in."""
    s = x.shape[-1]
    padded = torch.nn.functional.pad(x, (d, d, d, d), mode="reflect")  # (B, C, S + 2d, S + 2d)
    return torch.stack([padded[i, :, oy : oy + s, ox : ox + s] for i, (oy, ox) in enumerate(offsets)])


def epoch_generator(seed: int, epoch: int, rank: int = 0) -> torch.Generator:
    """The augmentation draws of one epoch on one process: the same after a resume."""
    return torch.Generator().manual_seed(seed * 100_003 + epoch * 1_009 + rank * 7_919 + 17)
