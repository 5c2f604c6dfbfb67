"""A pretrained start for CAVGA-D: its DCGAN encoder learns to predict ImageNet features first.

The paper starts CAVGA-D from a DCGAN pretrained on CelebA (Sec. 4, "Architecture details"). Those
weights are not published, and trained from scratch on ~200 bottles the encoder's attention does
not localise (docs/results.md). With ``model.encoder_init: distill`` training begins by teaching the
DCGAN encoder, on the run's own training images, to predict the features of an ImageNet-pretrained
EfficientNet-Lite0 (the teacher, the same weights CAVGA-R can use): after each of the encoder's
stride-2 blocks from stride 4 on, a 1x1 convolution maps its features to the teacher's at the same
stride (stages 2, 3 and 5: 24, 40 and 112 channels at strides 4, 8, 16) and the loss is the mean
squared error against the teacher's features, each channel standardised by its mean and standard
deviation over the training images. With ``distill.cutpaste`` a share of the images carries one
rectangle cut from another training image and pasted elsewhere (:func:`cut_paste`), so the encoder
also learns what the teacher sees where a part is out of place, not only on good images; the
painted validation defects are another kind (scratches, holes, stains, foreign texture), so the
check that decides on them is not trained on its own defects. Only training images are seen
(never the held-out normals the settings are decided on, nor test images). The 1x1 heads and the
teacher are dropped afterwards; CAVGA's training then starts from the distilled encoder
(fine-tuned, or fixed with ``model.freeze_encoder``). docs/method.md, "A pretrained start for CAVGA-D".
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from .backbones import PRETRAINED_HINT, EfficientNetLite0Encoder
from .config import DistillConfig, RunConfig
from .config.resolve import teacher_available
from .data import augment_batch, cell_weights, epoch_generator, make_loader
from .distributed import is_main
from .errors import CavgaError
from .runtime import load_checkpoint, save_checkpoint

# the teacher's body index (cavga.backbones.EfficientNetLite0Encoder: stem, stage 1, ...) whose
# output has this stride: the end of the stage with that stride and the most channels
TEACHER_AT_STRIDE = {4: 2, 8: 3, 16: 5}
SHARED_ENCODER = "distilled-encoder.pt"  # distill.share: the restart candidates' encoder, in RUN/restarts/
OWN_ENCODER = SHARED_ENCODER  # a run's own, the same name in its own folder until its first checkpoint


def block_outputs(net: nn.Module, x: Tensor, indices: list[int]) -> list[Tensor]:
    """The outputs of ``net.body``'s blocks ``indices`` (ascending) for images ``x`` in [0, 1]; the
    blocks after the last one are not run. Both the teacher and the DCGAN encoder have this layout."""
    h, out = net.prepare(x), []
    for i, block in enumerate(net.body[: indices[-1] + 1]):
        h = block(h)
        if i in indices:
            out.append(h)  # (B, C_i, S/stride_i, S/stride_i)
    return out


def teacher_features(teacher: nn.Module, x: Tensor, strides: list[int]) -> list[Tensor]:
    """The teacher's feature maps at ``strides`` (ascending) for images ``x`` in [0, 1]."""
    return block_outputs(teacher, x, [TEACHER_AT_STRIDE[s] for s in strides])


@torch.no_grad()
def _channel_stats(teacher: nn.Module, batches, strides: list[int]) -> list[tuple[Tensor, Tensor]]:
    """Per-channel mean and standard deviation of the teacher's maps over the batches given (the
    training images of the full batches: the loader drops a last incomplete one).
    ``batches`` yields (images, valid) pairs: images (B, 3, S, S) and ``valid`` (B, 1, S, S) marking
    content (``data.resize``: pad or center), or None where there is no padding: each map position
    counts by its share of content, so the padding does not enter the statistics."""
    sums, squares, counts = [0.0] * len(strides), [0.0] * len(strides), [0.0] * len(strides)
    for x, valid in batches:
        for k, f in enumerate(teacher_features(teacher, x, strides)):
            w = _content_weights(valid, f)  # (B, 1, h, w)
            sums[k] = sums[k] + (f * w).sum((0, 2, 3))  # (C_k,)
            squares[k] = squares[k] + (f * f * w).sum((0, 2, 3))  # (C_k,)
            counts[k] = counts[k] + w.expand(f.shape[0], 1, *f.shape[2:]).sum()  # values per channel
    if not counts[0]:
        raise CavgaError("model.encoder_init: distill: no training images to distil on")
    stats = []
    for k in range(len(strides)):
        mean = sums[k] / counts[k]
        std = (squares[k] / counts[k] - mean**2).clamp_min(0).sqrt() + 1e-3
        stats.append((mean.view(1, -1, 1, 1), std.view(1, -1, 1, 1)))
    return stats


def _content_weights(valid: Tensor | None, f: Tensor) -> Tensor:
    """(B, 1, h, w): each position of the map ``f`` (B, C, h, w) weighted by its share of content
    (``valid`` (B, 1, S, S)); all ones (1, 1, 1, 1) where the images have no padding."""
    return f.new_ones(1, 1, 1, 1) if valid is None else cell_weights(valid, f.shape[-2:])


def masked_mse(pred: Tensor, target: Tensor, weights: Tensor) -> Tensor:
    """The mean squared error of ``pred`` against ``target`` (B, C, h, w), each position weighted by
    ``weights`` (B, 1, h, w) or (1, 1, 1, 1): ``torch.nn.functional.mse_loss`` where every weight is 1,
    and nothing of the padding where ``weights`` is the share of content (:func:`_content_weights`)."""
    w = weights.expand(pred.shape[0], 1, *pred.shape[2:])  # (B, 1, h, w)
    return ((pred - target) ** 2 * w).sum() / (w.sum() * pred.shape[1]).clamp_min(1e-12)


def cut_paste(
    x: Tensor, share: float, generator: torch.Generator, valid: Tensor | None = None
) -> tuple[Tensor, Tensor | None]:
    """Images ``x`` (B, C, S, S), each with probability ``share`` given one rectangle of another image
    of the batch (itself when alone) cut at one random place and pasted at another: content out of
    place, as in CutPaste (Li et al., CVPR 2021). The rectangle covers 2-15 % of the image, its
    aspect ratio between 1/3 and 3. Draws from ``generator`` (CPU), so a resumed run repeats them.
    Returns the images and their padding masks: the rectangle carries its source's part of ``valid``
    (B, 1, S, S) with it, so padding pasted into content stays out of the loss and content pasted onto
    padding enters it (None stays None: no padding)."""
    b, _, s, _ = x.shape
    out = x.clone()  # (B, C, S, S)
    out_valid = None if valid is None else valid.clone()  # (B, 1, S, S)
    for i in range(b):
        u, area, log_aspect = torch.rand(3, generator=generator).tolist()
        if u >= share:
            continue
        area, aspect = (0.02 + 0.13 * area) * s * s, 3.0 ** (2 * log_aspect - 1)
        h = min(max(round((area * aspect) ** 0.5), 1), s - 1)
        w = min(max(round((area / aspect) ** 0.5), 1), s - 1)
        j = (i + 1 + int(torch.randint(b - 1, (), generator=generator))) % b if b > 1 else i  # another image
        sy, sx, dy, dx = (int(torch.randint(s - n + 1, (), generator=generator)) for n in (h, w, h, w))
        out[i, :, dy : dy + h, dx : dx + w] = x[j, :, sy : sy + h, sx : sx + w]
        if out_valid is not None:
            out_valid[i, :, dy : dy + h, dx : dx + w] = valid[j, :, sy : sy + h, sx : sx + w]
    return out, out_valid


def _on(valid: Tensor | None, device: torch.device) -> Tensor | None:
    """A batch's padding mask on ``device`` (None: no padding)."""
    return None if valid is None else valid.to(device)


def distill_encoder(
    encoder: nn.Module,
    teacher: nn.Module,
    loader,
    cfg: DistillConfig,
    device: torch.device,
    seed: int = 0,
    progress: bool = True,
    autocast: Callable[[], AbstractContextManager] = nullcontext,
) -> list[float]:
    """Train ``encoder`` (a DCGANEncoder) in place to predict ``teacher``'s features; return the mean
    loss of each epoch. ``loader`` yields batches with an ``image`` (B, 3, S, S) in [0, 1].
    ``autocast`` (the run's ``train.bf16``, :mod:`cavga.accel`) wraps both networks' forward passes;
    the channel statistics, the standardised targets and the loss stay in float32."""
    taps = [i for i in range(len(encoder.body)) if 2 ** (i + 1) in TEACHER_AT_STRIDE]
    strides = [2 ** (i + 1) for i in taps]
    teacher = teacher.to(device).eval().requires_grad_(False)
    stats = _channel_stats(teacher, ((b.image.to(device), _on(b.valid, device)) for b in loader), strides)
    heads = nn.ModuleList(  # 1x1 convolutions from the encoder's widths to the teacher's
        nn.Conv2d(encoder.body[i][0].out_channels, mean.shape[1], 1) for i, (mean, _) in zip(taps, stats, strict=True)
    ).to(device)
    encoder.train().requires_grad_(True)
    opt = torch.optim.Adam([*encoder.parameters(), *heads.parameters()], lr=cfg.lr)
    # "cosine": lr * (1 + cos(pi e / epochs)) / 2 in epoch e, reaching 0 after the last; "constant": lr
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.epochs) if cfg.schedule == "cosine" else None
    losses = []
    bar = tqdm(range(cfg.epochs), desc="distil encoder", disable=not progress, leave=False)
    for epoch in bar:
        rng = epoch_generator(seed, epoch)
        total, count = torch.zeros((), device=device), 0
        for batch in loader:
            # (B, 3, S, S), (B, 1, S, S) or None: the padding (data.resize pad or center) is left out of the loss
            x, valid = augment_batch(batch.image.to(device), _on(batch.valid, device), cfg.augment, rng)
            if cfg.cutpaste > 0:
                x, valid = cut_paste(x, cfg.cutpaste, rng, valid)  # (B, 3, S, S), (B, 1, S, S) or None
            with torch.no_grad(), autocast():
                feats = teacher_features(teacher, x, strides)  # [(B, C_k, S/s_k, S/s_k)]
            target = [(t.float() - m) / s for t, (m, s) in zip(feats, stats, strict=True)]
            with autocast():
                pred = [h(f) for h, f in zip(heads, block_outputs(encoder, x, taps), strict=True)]
            pred = [p.float() for p in pred]  # the loss in float32, as Eq. 1's BCE (cavga.losses)
            loss = sum(masked_mse(p, t, _content_weights(valid, p)) for p, t in zip(pred, target, strict=True))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.detach() * x.shape[0]
            count += x.shape[0]
        losses.append(float(total) / max(count, 1))
        if sched is not None:
            sched.step()
        bar.set_postfix(loss=f"{losses[-1]:.3f}")
    return losses


def distill_teacher(cfg: RunConfig) -> nn.Module:
    """The EfficientNet-Lite0 teacher of ``distill.teacher_weights``, or a one-line error saying how
    to get it (checked before a run folder is written)."""
    try:
        return EfficientNetLite0Encoder(cfg.distill.teacher_weights, allow_random_init=False, stride=16)
    except CavgaError as e:
        if cfg.distill.teacher_weights != "imagenet" or teacher_available("imagenet"):
            raise  # a file of the user's, or the package's own file unreadable: that error says which
        raise CavgaError(
            f"model.encoder_init: distill needs the ImageNet EfficientNet-Lite0 teacher: {PRETRAINED_HINT}, "
            "or --set distill.teacher_weights=PATH to a Lite0 state dict"
        ) from e


def distilled_start(
    model: nn.Module,
    teacher: nn.Module,
    dataset,
    cfg: RunConfig,
    device: torch.device,
    progress: bool = True,
    shared: Path | None = None,
    key: dict[str, Any] | None = None,
    own: Path | None = None,
    autocast: Callable[[], AbstractContextManager] = nullcontext,
) -> None:
    """Give a CAVGA-D ``model`` its pretrained start from ``teacher`` on ``dataset`` (the training
    images); the encoder records the source, which the checkpoint keeps.

    ``shared`` (``distill.share``: the restart candidates' one encoder): where that file exists the
    encoder is loaded from it, its ``key`` (what the distillation depended on: configuration, image
    size, split) checked against this run's, and nothing is distilled; otherwise the encoder is
    distilled and saved there (atomically; by the only process, or rank 0) for the next candidates.
    ``own`` (a run without a shared encoder): the same, in the run's own folder, so that a run stopped
    before its first checkpoint does not distil again on ``--resume``; a file of another ``key`` or
    seed is distilled over. Either file keeps the random state the distillation left (its heads' draws), which
    the run that distilled gets back on loading it: a resumed run draws what the uninterrupted one did.
    ``autocast``: the run's ``train.bf16`` context (:func:`distill_encoder`)."""
    t, epochs = cfg.train, cfg.distill.epochs
    path = shared if shared is not None else own
    record = load_checkpoint(path, ("encoder", "key", "losses", "seed")) if path and path.is_file() else None
    if record is not None and (record.get("key") != key or (shared is None and record.get("seed") != t.seed)):
        if shared is not None:
            raise CavgaError(f"{shared}: distilled for another configuration or split than this run; remove it")
        record = None  # this run's own file, left by a start under other settings: distilled again
    if record is not None:
        model.encoder.load_state_dict(record["encoder"])
        losses, seed = record["losses"], record["seed"]
        if seed == t.seed and "rng" in record:  # the run that distilled: on as if it had just done so
            torch.set_rng_state(record["rng"])
    else:
        loader = make_loader(dataset, cfg.data.image_size, t.batch_size, True, t.num_workers, t.seed)
        losses = distill_encoder(model.encoder, teacher, loader, cfg.distill, device, t.seed, progress, autocast)
        seed = t.seed
        if path is not None and is_main():
            record = {"encoder": model.encoder.state_dict(), "key": key, "losses": losses, "seed": seed}
            save_checkpoint({**record, "rng": torch.get_rng_state()}, path)
    how = f"{epochs} epochs" + ("" if shared is None else f" with seed {seed}, shared by the restart candidates")
    how += f", loss {losses[0]:.3f} -> {losses[-1]:.3f}"  # the sum over the tapped strides of each masked MSE
    if progress:
        tqdm.write(f"encoder distilled from EfficientNet-Lite0 ({how})")
    model.encoder_pretrained(f"distilled from EfficientNet-Lite0 ({teacher.loaded_weights}), {how}")
