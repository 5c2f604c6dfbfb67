"""Training (AE-L2, AE-SSIM) and fitting (PatchCore) into a cavga run folder.

Both use train.py's run machinery: the same split and protocol (:func:`cavga.train.open_run`),
config.yaml / split.json / history.jsonl, atomic checkpoints with fingerprints, resume, and the
score normaliser and mask quantiles fitted on held-out normals (:func:`cavga.held_out.fit_normalizer`).

The AE loop is plain Adam (train.lr, betas train.beta1/beta2, weight decay baseline.ae_weight_decay)
on batches of train.batch_size for train.epochs, each batch under train.augment's random views (as
CAVGA's training; "none" by default).  PatchCore has no gradient training: one pass over the training
normals, as they are, builds its memory bank.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from .. import data as D
from ..config import RunConfig, to_dict
from ..fingerprint import fingerprint
from ..held_out import eval_loader, fit_normalizer
from ..image_scores import Normalizer
from ..losslog import check_finite, check_finite_parameters
from ..mask_threshold import decide_held_out_mask_quantile
from ..runfolder import RunData, open_run, start_run_folder, write_history
from ..runtime import CHECKPOINT, resolve_device, save_checkpoint, seed_everything
from .ae import ae_loss, require_kornia
from .patchcore import PatchCore, greedy_coreset
from .scoring import BaselinePredictor, build_baseline, evidence, to_ae_size


def train_baseline(cfg: RunConfig, run_dir: Path, resume: bool, progress: bool) -> Path:
    """Train or fit ``cfg.model.variant`` (a baseline) into ``run_dir`` (already locked); the checkpoint path."""
    require_kornia(cfg.model.variant)  # AE-SSIM without kornia stops before anything is read or written
    state, run_data = open_run(cfg, run_dir, resume)
    device = resolve_device(cfg.train.device)
    seed_everything(cfg.train.seed)
    done = state is not None and state.get("normalizer") is not None
    is_patchcore = cfg.model.variant == "PatchCore"
    if is_patchcore and done:
        return run_dir / CHECKPOINT  # the bank is built in one go: a finished fit has nothing to resume
    model = build_baseline(cfg, from_checkpoint=state is not None and not is_patchcore).to(device)
    if state is None:
        start_run_folder(cfg, run_dir, run_data)
    fp = fingerprint(to_dict(cfg), run_data.to_dict())
    if is_patchcore:
        return _fit_patchcore(model, cfg, run_dir, run_data, device, fp, progress)
    return _train_ae(model, cfg, run_dir, run_data, device, fp, state, progress)


def _state(cfg, model, opt, epoch, history, normalizer, fp, weights: str) -> dict[str, Any]:
    check_finite_parameters(model.named_parameters(), epoch)
    return {
        "format": 1,
        "config": to_dict(cfg),
        "model": model.state_dict(),
        "opt": opt.state_dict() if opt is not None else None,
        "epoch": epoch,
        "history": history,
        "rng": torch.get_rng_state(),
        "backbone_weights": weights,
        "normalizer": normalizer,
        "fingerprint": fp,
    }


def finish_baseline_decisions(model, cfg: RunConfig, run_data: RunData, device) -> dict[str, Any]:
    """What fitting's end adds to the checkpoint (as :func:`cavga.decisions.finish_decisions` for CAVGA):
    the score normaliser and map statistics of the held-out normals, then (``infer.mask_quantile:
    auto``) the mask quantile (and margin, peak fraction) decided on painted copies of them."""
    normalizer = fit_normalizer(
        None, run_data.val or run_data.train, cfg, device, evidence=lambda x: evidence(model, cfg, x)
    )
    decided: dict[str, Any] = {"normalizer": normalizer}
    if cfg.infer.mask_quantile == "auto" and normalizer is not None:  # as CAVGA's training decides it
        held_out_stats = Normalizer(**normalizer)  # fitted just now at cfg.infer.normalizer_quantile
        predictor = BaselinePredictor(model, cfg, held_out_stats, device)
        asked = cfg.infer.mask_margin, cfg.infer.mask_peak_fraction  # "auto" or a number
        decided.update(decide_held_out_mask_quantile(predictor, run_data.val, *asked))
    return decided


def _finish(model, cfg, run_dir: Path, run_data: RunData, device, opt, history, fp, weights: str) -> Path:
    """Fit the normaliser and mask quantiles on the held-out normals; write the final checkpoint."""
    decided = finish_baseline_decisions(model, cfg, run_data, device)
    state = _state(cfg, model, opt, cfg.train.epochs, history, decided.pop("normalizer"), fp, weights)
    state.update(decided)
    ckpt = run_dir / CHECKPOINT
    save_checkpoint(state, ckpt)
    write_history(run_dir, history)
    return ckpt


def _train_ae(model, cfg: RunConfig, run_dir: Path, run_data: RunData, device, fp, state, progress) -> Path:
    kind, window, ckpt_path = cfg.model.variant, cfg.baseline.ssim_window, run_dir / CHECKPOINT
    opt = torch.optim.Adam(
        model.parameters(),
        lr=cfg.train.lr,
        betas=(cfg.train.beta1, cfg.train.beta2),
        weight_decay=cfg.baseline.ae_weight_decay,
        fused=True,  # as CAVGA's optimisers (step.make_optimizers)
    )
    start_epoch, history = 0, []
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        start_epoch, history = state["epoch"], state.get("history", [])
        write_history(run_dir, history)
        torch.set_rng_state(state["rng"])
        if start_epoch >= cfg.train.epochs and state.get("normalizer") is not None:
            return ckpt_path
    train_set = D.ImageDataset(run_data.train, cfg.data.image_size, cache=cfg.train.num_workers == 0)
    for epoch in range(start_epoch, cfg.train.epochs):
        model.train()
        seed = cfg.train.seed * 100_003 + epoch
        loader = D.make_loader(train_set, cfg.data.image_size, cfg.train.batch_size, True, cfg.train.num_workers, seed)
        total, n, t0 = 0.0, 0, time.perf_counter()
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.train.epochs}", disable=not progress, leave=False)
        augment_rng = D.epoch_generator(cfg.train.seed, epoch)  # train.augment's draws for this epoch
        for batch in bar:
            x, _ = D.augment_batch(batch.image.to(device), None, cfg.train.augment, augment_rng)  # (B, 3, S, S)
            x = to_ae_size(x, model.image_size)  # (B, 3, s, s)
            loss = ae_loss(kind, x, model(x), window)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            value = float(loss.detach())
            check_finite({"loss": value}, epoch + 1, n + 1, ckpt_path)
            total, n = total + value, n + 1
            bar.set_postfix(loss=f"{value:.4f}")
        history.append({"epoch": epoch + 1, "seconds": round(time.perf_counter() - t0, 2), "loss": total / max(n, 1)})
        if progress:
            tqdm.write(f"epoch={epoch + 1} loss={total / max(n, 1):.4g}")
        save_checkpoint(_state(cfg, model, opt, epoch + 1, history, None, fp, "none"), ckpt_path)
        write_history(run_dir, history)  # after the checkpoint: the history never runs ahead of it
    return _finish(model, cfg, run_dir, run_data, device, opt, history, fp, "none")


def _fit_patchcore(model: PatchCore, cfg: RunConfig, run_dir: Path, run_data: RunData, device, fp, progress) -> Path:
    t0 = time.perf_counter()
    normals = [r for r in run_data.train if r.label == 0]
    loader = tqdm(eval_loader(normals, cfg), "features", disable=not progress, leave=False)
    patches = torch.cat([model.patches(b.image.to(device)).cpu() for b in loader])  # (N, 152)
    n = max(1, math.ceil(cfg.baseline.coreset_fraction * len(patches)))
    picked = greedy_coreset(patches.to(device), n, cfg.baseline.coreset_projection, cfg.train.seed)
    model.bank = patches[picked].to(device)  # (M, 152)
    # the held-out normals' farthest pixel sets the map's scale (0.5 on the map)
    peaks = [model.distance_map(b.image.to(device)).amax() for b in eval_loader(run_data.val or normals, cfg)]
    model.map_scale.fill_(max(float(torch.stack(peaks).max()), 1e-12))
    history = [
        {
            "epoch": cfg.train.epochs,  # no epochs: the one fit stands for all of them
            "seconds": round(time.perf_counter() - t0, 2),
            "n_patches": len(patches),
            "bank": n,
            "map_scale": float(model.map_scale),
        }
    ]
    weights = model.features.encoder.loaded_weights
    return _finish(model, cfg, run_dir, run_data, device, None, history, fp, weights)
