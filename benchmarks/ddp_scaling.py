"""Scaling of DDP training on the CPU: 2 Gloo processes x 1 thread against 1 process x 2 threads.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/ddp_scaling.py --size 64 --batch 16 --steps 6

Both run cavga's own ``train_step`` (CAVGA-Du, paper widths) on the same global batch of random
images: one process on the whole batch with ``torch.set_num_threads(2)``, or two ranks on half each
(``cavga.distributed.wrap``: DDP over Gloo, gradients all-reduced in ``backward``), one thread each.
Also times one process with one thread. Prints images/s, ``ddp / single(2 threads)`` (the same two
cores used either way) and the scaling efficiency ``ddp / (2 x single(1 thread))`` (1.0: two ranks
twice as fast as one); writes --out (default benchmarks/results/ddp_scaling.json). The model is
set up as benchmarks/speed.py's (``cavga.speed.bench._config``: resolved, trained from scratch);
--batch must be even, so that both ranks' halves add up to it.
Quoted in docs/performance.md (Distributed training).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import tempfile
import time
from pathlib import Path

import torch
import torch.multiprocessing as mp

from cavga import distributed as dist
from cavga.config import VARIANTS
from cavga.networks import build_networks
from cavga.speed import ab
from cavga.speed.bench import _config
from cavga.step import make_optimizers, train_step

WORLD = 2  # ranks
DEFAULT_OUT = Path(__file__).parent / "results" / "ddp_scaling.json"


def _setup(args, batch: int):
    """A resolved config (as the speed benchmark's), networks from seed 0, a batch of random images."""
    torch.manual_seed(0)
    cfg = _config(args.variant, args.size, batch)
    model, disc = build_networks(cfg.model, args.size, allow_random_init=True)
    x = torch.rand(batch, 3, args.size, args.size)  # (B, 3, S, S)
    return cfg, model, disc, x, torch.zeros(batch, dtype=torch.long)


def _time_steps(model, disc, cfg, x, labels, steps: int) -> float:
    opt_g, opt_d = make_optimizers(dist.unwrap(model), dist.unwrap(disc), cfg)
    train_step(model, disc, opt_g, opt_d, x, labels, cfg)  # warm-up
    dist.barrier()
    t0 = time.perf_counter()
    for _ in range(steps):
        train_step(model, disc, opt_g, opt_d, x, labels, cfg)
    dist.barrier()
    return time.perf_counter() - t0


def single(args, threads: int) -> float:
    torch.set_num_threads(threads)
    cfg, model, disc, x, labels = _setup(args, args.batch)
    return args.steps * args.batch / _time_steps(model, disc, cfg, x, labels, args.steps)


def _worker(rank: int, world: int, port: int, args, out: str) -> None:
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world))
    ctx = dist.init(torch.device("cpu"))
    cfg, model, disc, x, labels = _setup(args, args.batch // world)
    seconds = _time_steps(dist.wrap(model, ctx), dist.wrap(disc, ctx), cfg, x, labels, args.steps)
    if ctx.is_main:
        Path(out).write_text(json.dumps(args.steps * args.batch / seconds))
    dist.close(ctx)


def ddp(args, world: int = WORLD) -> float:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "ips.json")
        mp.spawn(_worker, args=(world, port, args, out), nprocs=world, join=True)
        return json.loads(Path(out).read_text())


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    """The options, each checked before anything runs (argparse errors)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variant", choices=VARIANTS, default="Du")
    ap.add_argument("--size", type=ab.image_size, default=64)
    ap.add_argument(
        "--batch", type=ab.at_least(WORLD), default=16, help=f"global batch, even (each of {WORLD} ranks takes half)"
    )
    ap.add_argument("--steps", type=ab.at_least(1), default=6)
    ap.add_argument(
        "--repeats", type=ab.at_least(1), default=2, help="alternate single and DDP runs, keep each one's best"
    )
    ap.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help="JSON file (default benchmarks/results/ddp_scaling.json)"
    )
    args = ap.parse_args(argv)
    if args.batch % WORLD:
        ap.error(
            f"--batch {args.batch}: must be even, each of {WORLD} ranks takes half (an odd image would not be counted)"
        )
    if args.out.is_dir():
        ap.error(f"--out {args.out}: a folder; give the JSON file's path")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    best_one = best_single = best_ddp = 0.0
    for _ in range(args.repeats):
        best_one = max(best_one, single(args, 1))
        best_single = max(best_single, single(args, 2))
        best_ddp = max(best_ddp, ddp(args))
    result = {
        "variant": args.variant,
        "image_size": args.size,
        "global_batch": args.batch,
        "world": WORLD,
        "steps": args.steps,
        "single_1_thread_images_per_s": round(best_one, 2),
        "single_2_threads_images_per_s": round(best_single, 2),
        "ddp_2x1_threads_images_per_s": round(best_ddp, 2),
        "ddp_over_single_2_threads": round(best_ddp / best_single, 3),
        "scaling_efficiency": round(best_ddp / (2 * best_one), 3),
        "load_average_1min": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(result, indent=1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
