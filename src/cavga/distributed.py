"""Data-parallel training on torch.distributed, set up from torchrun's environment.

``torchrun --nproc_per_node=N -m cavga train ...`` starts N processes with ``RANK``, ``LOCAL_RANK``,
``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT`` set; :func:`init` joins them into one process
group: NCCL when training on CUDA (one GPU per process, ``cuda:LOCAL_RANK``), Gloo on the CPU.
Without those variables (a plain ``cavga train``) everything here is a no-op for one process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data.distributed import DistributedSampler

from .errors import CavgaError


@dataclass(frozen=True)
class Context:
    """Where this process stands in the group; ``world_size`` 1 for a plain run."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")
    owns_group: bool = False  # this process initialised the group and destroys it in close()

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def env_world_size() -> int:
    """WORLD_SIZE as torchrun sets it; 1 when unset."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise CavgaError(f"WORLD_SIZE={os.environ['WORLD_SIZE']!r} is not an integer") from None


# What Gloo and NCCL say when a collective's peer process has ended: a rank that stopped on an error of
# its own (rank 0 alone locks and writes the run folder) leaves the others failing in whatever collective
# they were in, with a backend traceback that says nothing of the cause.
_PEER_GONE = (
    "Connection closed by peer",
    "Connection reset by peer",
    "Broken pipe",
    "NCCL communicator was aborted",
)


def peer_stopped(error: BaseException) -> bool:
    """Whether ``error`` is a collective failing because another rank's process has ended (under torchrun)."""
    return env_world_size() > 1 and isinstance(error, RuntimeError) and any(s in str(error) for s in _PEER_GONE)


def init(device: torch.device) -> Context:
    """Join torchrun's process group (NCCL on CUDA, Gloo on CPU); a single-process Context otherwise.

    On CUDA each process takes ``cuda:LOCAL_RANK``; an explicit ``cuda:N`` is refused under torchrun."""
    if dist.is_available() and dist.is_initialized():  # e.g. a caller that set up the group itself
        rank, world = dist.get_rank(), dist.get_world_size()
        local = int(os.environ.get("LOCAL_RANK", rank))
        return Context(rank, local, world, _rank_device(device, local, world), owns_group=False)
    world = env_world_size()
    if world <= 1:
        return Context(device=device)
    if not dist.is_available():
        raise CavgaError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    device = _rank_device(device, local, world)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend=backend, init_method="env://", rank=rank, world_size=world)
    return Context(rank, local, world, device, owns_group=True)


def _rank_device(device: torch.device, local_rank: int, world: int) -> torch.device:
    if device.type != "cuda" or world <= 1:
        return device
    if device.index is not None and device.index != local_rank:
        raise CavgaError(f"--device {device}: under torchrun each process uses cuda:LOCAL_RANK; pass --device cuda")
    if local_rank >= torch.cuda.device_count():
        raise CavgaError(f"LOCAL_RANK {local_rank}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return torch.device("cuda", local_rank)


def close(ctx: Context) -> None:
    """Leave the group this process initialised (no-op otherwise)."""
    if ctx.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def is_main() -> bool:
    return not _active() or dist.get_rank() == 0


def world_size() -> int:
    return dist.get_world_size() if _active() else 1


def barrier() -> None:
    """Wait for every rank (no-op for one process)."""
    if _active():
        dist.barrier()


def broadcast_object(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank (``obj`` itself for one process); picklable objects only."""
    if not _active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_reduce_sum(t: Tensor) -> Tensor:
    """The sum of ``t`` over ranks, a new tensor (``t`` itself for one process)."""
    if not _active():
        return t
    out = t.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out


def check_same_view(run_dir: Any, view: Any) -> None:
    """Every rank must see the same run (``view``: the epoch its checkpoint holds, the split's
    fingerprint); else, on every rank alike, one line: a multi-node ``--out`` on disks of their own
    would train replicas from different starts, and the data must be the same on every node."""
    if not _active():
        return
    views: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(views, view)
    if any(v != views[0] for v in views):
        seen = ", ".join(
            f"rank {r}: {'no checkpoint' if v[0] is None else f'epoch {v[0]}'}" for r, v in enumerate(views)
        )
        raise CavgaError(
            f"{run_dir}: the processes see different runs or data ({seen}; or different splits); under a "
            "multi-node torchrun --out and --data must be on a filesystem every node shares"
        )


def check_shards(n_images: int, batch_size: int, ctx: Context) -> None:
    """The global batch splits evenly over the ranks, and every rank gets at least one image an epoch."""
    if batch_size % ctx.world_size:
        raise CavgaError(f"train.batch_size {batch_size} is not divisible by the {ctx.world_size} processes")
    if n_images < ctx.world_size:
        raise CavgaError(
            f"{n_images} training image(s) for {ctx.world_size} processes: each needs at least one; use fewer processes"
        )


def wrap(module: nn.Module, ctx: Context) -> nn.Module:
    """``module`` in DistributedDataParallel when training on more than one process; as it is otherwise.

    Every trainable parameter gets a gradient in every step (the training step sees to it), so the
    reducer runs without ``find_unused_parameters``. Grad-CAM's ``autograd.grad`` is taken w.r.t. the
    feature map, not the parameters, so it fires no reducer hook; only ``backward`` does."""
    if not ctx.enabled or not any(p.requires_grad for p in module.parameters()):
        return module
    ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return DDP(module, device_ids=ids)


def unwrap(module: nn.Module) -> nn.Module:
    """The module inside a DDP wrapper (the module itself otherwise)."""
    return module.module if isinstance(module, DDP) else module


def shard_loader(
    dataset: torch.utils.data.Dataset, batch_size: int, num_workers: int, seed: int, epoch: int, ctx: Context
) -> torch.utils.data.DataLoader:
    """This rank's share of an epoch: a DistributedSampler, reshuffled by (seed, epoch) alike on every
    rank, split into disjoint equal shards; ``batch_size`` is the global batch, each rank takes
    ``batch_size / world_size`` of it."""
    from .data import collate

    check_shards(len(dataset), batch_size, ctx)
    per_rank = batch_size // ctx.world_size
    sampler = DistributedSampler(
        dataset, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True, seed=seed, drop_last=True
    )
    sampler.set_epoch(epoch)
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=per_rank,
        sampler=sampler,
        drop_last=len(sampler) > per_rank,
        num_workers=num_workers,
        collate_fn=collate,
        pin_memory=ctx.device.type == "cuda",
    )


def _active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
