"""CAVGA's training loop, written out: per epoch, one :func:`cavga.step.train_step` per batch (a
discriminator update, then an encoder/decoder update: Eq. 4 or Eq. 6), the painted check every
``train.validate_every`` epochs, and an atomic checkpoint; a stopped run resumes from its last one.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from . import data as D
from . import distributed as dist
from .accel import accel_for
from .completion import training_finished
from .config import RunConfig, resolved, to_dict
from .decisions import finish_decisions
from .distill import OWN_ENCODER, SHARED_ENCODER, distill_teacher, distilled_start
from .epoch_choice import EpochChoice, check_held_out
from .errors import CavgaError
from .fingerprint import fingerprint
from .io_utils import check_output_folder, refuse_foreign, remove_stale_temp_files
from .losslog import LossLog, check_finite_parameters
from .networks import build_networks
from .restarts import start_from_best, training_seed
from .runfolder import open_run, run_files, start_run_folder, write_history
from .runlock import RunLock
from .runtime import CHECKPOINT, deterministic_kernels, resolve_device, save_checkpoint, seed_everything
from .step import class_weight_of, make_optimizers, train_step

LOG_EVERY = 10  # training steps between reads of the losses (each read waits for the device)


def train(cfg: RunConfig, run_dir: str | Path, resume: bool = False, progress: bool = True) -> Path:
    """Train one CAVGA variant (or fit a baseline, :mod:`cavga.baselines`) into ``run_dir``; return the checkpoint path.

    The ``auto`` model settings are made concrete first (:func:`cavga.config.resolved`); config.yaml
    records what they became. ``run_dir`` receives config.yaml, split.json, history.jsonl and checkpoint.pt (rewritten
    atomically after every epoch).  With ``resume`` an interrupted run continues from its last
    complete epoch with the configuration and split it was started with.  The folder is locked
    for the whole run (:mod:`cavga.runlock`); a non-finite loss stops the run, and the last
    checkpoint, of the last complete epoch, stays as it was.

    Under torchrun (``WORLD_SIZE`` > 1) every process trains a DDP replica on its shard of each
    batch; rank 0 alone locks and writes the run folder, the others wait for it (docs/performance.md).
    """
    run_dir = Path(run_dir)
    check_output_folder(run_dir)
    if not (run_dir / CHECKPOINT).exists():  # a new run: a user's config.yaml in --out stays theirs
        refuse_foreign(run_files(run_dir), "train")
    cfg = resolved(cfg.validate()).validate()  # checked, then the "auto" model settings made concrete
    with deterministic_kernels(cfg.train.deterministic):
        return _train_checked(cfg, run_dir, resume, progress)


def _train_checked(cfg: RunConfig, run_dir: Path, resume: bool, progress: bool) -> Path:
    """:func:`train` once the configuration and the folder are known to be good."""
    if cfg.model.is_baseline:  # AE-L2, AE-SSIM, PatchCore: their own loop or fit, the same run folder
        from .baselines.fit import train_baseline

        if dist.env_world_size() > 1:
            raise CavgaError(f"{cfg.model.variant} trains in one process; under torchrun only CAVGA's variants train")

        resolve_device(cfg.train.device)  # a device this machine lacks fails now, not after the data is read
        with RunLock(run_dir, "train"):
            remove_stale_temp_files(run_dir)
            return train_baseline(cfg, run_dir, resume, progress)
    ctx = dist.init(resolve_device(cfg.train.device))  # one process, or this rank of a torchrun group
    try:
        return _train_in(cfg, run_dir, resume, progress, ctx)
    finally:
        dist.close(ctx)


def _train_in(
    cfg: RunConfig, run_dir: Path, resume: bool, progress: bool, ctx: dist.Context, shared: Path | None = None
) -> Path:
    """Train in ``run_dir``, locked by rank 0 for the whole run; ``shared``: the restart candidates'
    distilled encoder (cavga.distill.distilled_start)."""
    if not ctx.is_main:
        return _train_locked(cfg, run_dir, resume, progress, ctx, shared)
    with RunLock(run_dir, "train"):
        remove_stale_temp_files(run_dir)
        return _train_locked(cfg, run_dir, resume, progress, ctx, shared)


def _train_locked(
    cfg: RunConfig, run_dir: Path, resume: bool, progress: bool, ctx: dist.Context, shared: Path | None
) -> Path:
    ckpt_path = run_dir / CHECKPOINT
    state, run_data = open_run(cfg, run_dir, resume, write=ctx.is_main)
    if state is None:
        check_held_out(cfg, run_data)  # before the restart candidates' folders or the run folder are written
    fp = fingerprint(to_dict(cfg), run_data.to_dict())
    if ctx.enabled:  # before anything is written or distilled: every rank must see one run and get batches
        dist.check_same_view(run_dir, (None if state is None else state["epoch"], fp["split"]))
        dist.check_shards(len(run_data.train), cfg.train.batch_size, ctx)
    if state is None and cfg.train.restarts > 1:  # cavga.restarts: candidates first, in folders of their own

        def train_candidate(c: RunConfig, folder: Path) -> Path:
            shared = folder.parent / SHARED_ENCODER if cfg.distill.share else None  # distill.share: one encoder
            return _train_in(c, check_output_folder(folder), (folder / CHECKPOINT).is_file(), progress, ctx, shared)

        state = start_from_best(cfg, run_dir, run_data, fp, train_candidate, ctx.is_main, progress)
    restarts = None if state is None else state.get("restarts")
    train_seed = training_seed(cfg, state)  # the chosen candidate's, where restarts chose one

    device = ctx.device
    seed_everything(train_seed)
    model, disc = build_networks(
        cfg.model, cfg.data.image_size, cfg.train.allow_random_init, from_checkpoint=state is not None
    )
    # CAVGA-D's pretrained start (cavga.distill): its teacher is loaded before the run folder is written
    teacher = distill_teacher(cfg) if state is None and cfg.model.encoder_init == "distill" else None
    if state is None and ctx.is_main:  # data and networks are good: only now does the run folder get written
        start_run_folder(cfg, run_dir, run_data)
    accel = accel_for(cfg.train, device)
    accel.prepare(model, disc)
    # decoded and resized once (up to train.cache_mb); train.augment flips/turns each batch on the device
    train_set = D.ImageDataset(
        run_data.train,
        cfg.data.image_size,
        cache=cfg.train.num_workers == 0,
        cache_limit_mb=cfg.train.cache_mb,
        resize=cfg.data.resize,
    )
    if teacher is not None:
        key = {**{k: v for k, v in to_dict(cfg).items() if k in ("data", "model", "distill")}, "split": fp["split"]}
        key["batch_size"] = cfg.train.batch_size  # what the distillation depended on, checked where it is shared
        own = None if shared is not None else run_dir / OWN_ENCODER  # kept until the first checkpoint
        show = progress and ctx.is_main
        distilled_start(model, teacher, train_set, cfg, device, show, shared, key, own, accel.autocast)
        del teacher
    opt_g, opt_d = make_optimizers(model, disc, cfg)
    start_epoch = 0
    history: list[dict[str, Any]] = []
    if state is not None:
        model.load_state_dict(state.get("last_model", state["model"]))  # the last epoch's, where one was chosen
        disc.load_state_dict(state["disc"])
        opt_g.load_state_dict(state["opt_g"])
        opt_d.load_state_dict(state["opt_d"])
        start_epoch = state["epoch"]
        history = state.get("history", [])
        if ctx.is_main:
            write_history(run_dir, history)  # the checkpoint's history is the record of what was trained
        torch.set_rng_state(state["rng"])
        if "cuda_rng" in state and device.type == "cuda":  # the reparameterisation's noise on a GPU
            torch.cuda.set_rng_state(state["cuda_rng"], device)
        if training_finished(state, cfg):  # its end ran too: nothing left to do
            if progress and ctx.is_main and start_epoch < cfg.train.epochs:
                tqdm.write(f"{run_dir}: stopped at epoch {start_epoch} by train.patience; --patience 0 trains on")
            elif progress and ctx.is_main:
                done = f"{start_epoch} epoch" + ("s" if start_epoch != 1 else "")
                tqdm.write(f"{run_dir}: already trained {done}; nothing to train (a larger --epochs trains on)")
            return ckpt_path
    choice = EpochChoice.start(cfg, run_data, state)  # train.validate_every: the epoch chosen on painted defects
    class_weight = class_weight_of(run_data.train, device) if cfg.model.weakly_supervised else None
    backbone = state["backbone_weights"] if state else getattr(model.encoder, "loaded_weights", "dcgan-init")
    accel.compile_modules(model, disc)
    ddp_model, ddp_disc = dist.wrap(model, ctx), dist.wrap(disc, ctx)
    reached = start_epoch  # the epochs trained: train.epochs, or fewer where train.patience stopped the run
    saved = start_epoch  # the epoch the checkpoint holds (train.checkpoint_every may skip some)
    for epoch in range(start_epoch, cfg.train.epochs):
        if choice is not None and choice.stale():  # train.patience: so many checks since the best one
            if progress and ctx.is_main:
                tqdm.write(
                    f"train.patience: {choice.patience} checks since the best (epoch {choice.best_epoch}); stopping"
                )
            break
        model.train()
        disc.train()
        if ctx.rank > 0:  # each rank its own reparameterisation noise, seeded by epoch so that a resumed
            # run draws what the uninterrupted one did (rank 0 keeps the single-process stream, checkpointed)
            torch.manual_seed(train_seed + 1_000_003 * ctx.rank + epoch)
        seed = train_seed * 100_003 + epoch
        if ctx.enabled:  # this rank's shard of each global batch
            loader = dist.shard_loader(train_set, cfg.train.batch_size, cfg.train.num_workers, seed, epoch, ctx)
        else:
            loader = D.make_loader(
                train_set,
                cfg.data.image_size,
                cfg.train.batch_size,
                True,
                cfg.train.num_workers,
                seed,
                accel.pin_memory,
            )
        log = LossLog(epoch + 1, ckpt_path, saved)
        augment_rng = D.epoch_generator(train_seed, epoch, ctx.rank)  # train.augment's draws for this epoch
        t0 = time.perf_counter()
        show = progress and ctx.is_main
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.train.epochs}", disable=not show, leave=False)
        for step, batch in enumerate(bar, 1):
            x, labels = accel.input(batch.image), batch.label.to(device, non_blocking=accel.pin_memory)
            valid = None if batch.valid is None else accel.input(batch.valid)  # (B, 1, S, S): padding
            x, valid = D.augment_batch(x, valid, cfg.train.augment, augment_rng)  # (B, C, S, S); as is for "none"
            try:
                with accel.autocast():
                    log.add(train_step(ddp_model, ddp_disc, opt_g, opt_d, x, labels, cfg, class_weight, valid))
            except RuntimeError:  # e.g. BCE on a NaN reconstruction: NaN weights from an unread step's loss
                log.read()  # names that step's NaN loss, if it was one
                check_finite_parameters(model.named_parameters(), epoch + 1)
                raise
            if step % LOG_EVERY == 0:  # one host sync per log interval, not per step
                latest = log.read()
                bar.set_postfix({k: f"{v:.3f}" for k, v in latest.items() if k in ("rec", "adv", "ae", "cga", "bce")})
        record = {"epoch": epoch + 1, "seconds": round(time.perf_counter() - t0, 2)}
        record.update(log.means())
        if choice is not None and choice.due(epoch + 1, cfg.train.epochs):  # rank 0's score, on every rank
            record.update(choice.check(model, epoch + 1, cfg, device))
        history.append(record)
        reached = epoch + 1
        if not ctx.is_main:  # rank 0 logs and checkpoints (its shard's losses) for every rank
            continue
        if progress:
            tqdm.write(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items()))
        last = epoch + 1 == cfg.train.epochs or (choice is not None and choice.stale())  # the run's last epoch
        if (epoch + 1) % cfg.train.checkpoint_every and not last:
            continue  # train.checkpoint_every: a resume restarts from the last saved epoch
        state = _state(cfg, model, disc, opt_g, opt_d, epoch + 1, history, backbone, fp, restarts)
        if choice is not None:
            state["epoch_choice"] = choice.saved()
        save_checkpoint(state, ckpt_path)
        (run_dir / OWN_ENCODER).unlink(missing_ok=True)  # cavga.distill: the checkpoint now holds the encoder
        saved = epoch + 1
        write_history(run_dir, history)  # after the checkpoint: the history never runs ahead of it

    if ctx.is_main:
        state = _state(cfg, model, disc, opt_g, opt_d, reached, history, backbone, fp, restarts)
        if choice is not None:
            choice.finish(model, state)  # the chosen epoch's weights: decided on, saved as the model
        state.update(finish_decisions(model, run_data, cfg, device))
        save_checkpoint(state, ckpt_path)
    dist.barrier()  # the other ranks return once the run folder is complete
    return ckpt_path


def _state(cfg, model, disc, opt_g, opt_d, epoch, history, backbone, fp, restarts=None) -> dict[str, Any]:
    check_finite_parameters(list(model.named_parameters()) + list(disc.named_parameters()), epoch)
    extra = {} if restarts is None else {"restarts": restarts}  # the candidates' scores and the seed chosen
    device = next(model.parameters()).device
    if device.type == "cuda":  # randn_like on a GPU draws from its own generator: a resume continues it
        extra["cuda_rng"] = torch.cuda.get_rng_state(device)
    return {
        "format": 1,
        "config": to_dict(cfg),
        "model": model.state_dict(),
        "disc": disc.state_dict(),
        "opt_g": opt_g.state_dict(),
        "opt_d": opt_d.state_dict(),
        "epoch": epoch,
        "history": history,
        "rng": torch.get_rng_state(),
        "backbone_weights": backbone,
        "normalizer": None,  # the image score's statistics: finish_decisions adds them
        "fingerprint": fp,  # config and split hashes: evaluate and predict check the folder against them
        **extra,
    }
