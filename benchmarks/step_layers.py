"""Where a training step's time goes on this CPU: each convolution shape's share and its fraction of
the machine's fp32 matmul peak, and the time outside convolutions.

    OMP_NUM_THREADS=2 PYTHONPATH=src python benchmarks/step_layers.py --variants Du,Ru --name NAME

Convolutions only (not the transposed ones of CAVGA-D's decoder, which count with the rest).
One profiled run of ``--steps`` steps (after two warm-ups) per variant, the same step as
benchmarks/speed.py (random encoder weights: the same arithmetic as ImageNet ones). A convolution's
FLOPs come from its shapes (2 x N x C_out x H_out x W_out x C_in/groups x k_h x k_w forward; its
backward counted as twice that, input and weight gradient, which overstates the first layer's: it
has no input gradient). The total is printed beside torch's flop counter for the same step (which
also counts the transposed convolutions and the linear layers). The peak is measured before and after. Writes
benchmarks/results/speed/step_layers-NAME.json and prints one table per variant.
"""

from __future__ import annotations

import argparse
import platform
from collections import defaultdict
from contextlib import nullcontext
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from cavga.accel import Accel
from cavga.io_utils import atomic_write_json
from cavga.networks import build_networks
from cavga.speed.bench import _batch, _config
from cavga.speed.flops import count_flops, matmul_peak
from cavga.speed.measure import training_call

CONV_OPS = {"aten::mkldnn_convolution": "forward", "aten::convolution_backward": "backward"}


def _conv_rows(events) -> tuple[list[dict], float, float]:
    """Per (input, weight) shape: forward and backward ms and FLOPs; plus the other ops' ms and all ms."""
    out_hw = {}  # (input shape, weight shape) -> output (H, W), from the backward's grad_output
    for e in events:
        if e.key == "aten::convolution_backward":
            grad_out, x, w = e.input_shapes[:3]
            out_hw[(tuple(x), tuple(w))] = tuple(grad_out[2:])
    rows: dict[tuple, dict] = defaultdict(lambda: {"forward_ms": 0.0, "backward_ms": 0.0, "gflop": 0.0})
    other_ms = total_ms = 0.0
    for e in events:
        ms = e.self_cpu_time_total / 1e3
        total_ms += ms
        kind = CONV_OPS.get(e.key)
        shapes = e.input_shapes
        if kind is None or len(shapes) < 3:
            other_ms += ms
            continue
        x, w = (shapes[0], shapes[1]) if kind == "forward" else (shapes[1], shapes[2])
        key = (tuple(x), tuple(w))
        if key not in out_hw or len(x) != 4:  # a convolution without a backward (none in a training step)
            other_ms += ms
            continue
        h, wo = out_hw[key]
        forward_flop = 2 * x[0] * w[0] * h * wo * w[1] * w[2] * w[3]
        rows[key][f"{kind}_ms"] += ms
        rows[key]["gflop"] += e.count * forward_flop * (1 if kind == "forward" else 2) / 1e9
    # a row without a forward is a transposed convolution's backward (its forward is another op,
    # counted with the rest): its time stays in the step, outside this table
    table = [{"input": list(k[0]), "weight": list(k[1]), **v} for k, v in rows.items() if v["forward_ms"] > 0]
    other_ms += sum(v["backward_ms"] for v in rows.values() if v["forward_ms"] == 0)
    return table, other_ms, total_ms


def profile_variant(variant: str, size: int, batch: int, steps: int) -> dict:
    """Profile ``steps`` training steps of ``variant``; times and FLOPs per step."""
    cfg = _config(variant, size, batch)
    torch.manual_seed(0)
    model, disc = build_networks(cfg.model, size, allow_random_init=True)
    cpu = torch.device("cpu")
    x, labels = _batch(cfg, cpu, Accel(cpu, None), 0)  # (B, 3, S, S), (B,)
    step = training_call(model, disc, cfg, x, labels, nullcontext)
    counted = count_flops(step) / 1e9  # one step, torch's flop counter
    step()
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        for _ in range(steps):
            step()
    table, other_ms, total_ms = _conv_rows(prof.key_averages(group_by_input_shape=True))
    for r in table:
        for k in ("forward_ms", "backward_ms", "gflop"):
            r[k] = round(r[k] / steps, 3)
    table.sort(key=lambda r: -(r["forward_ms"] + r["backward_ms"]))
    return {
        "variant": variant,
        "step_ms": round(total_ms / steps, 1),
        "other_ms": round(other_ms / steps, 1),
        "conv_gflop": round(sum(r["gflop"] for r in table), 2),
        "flop_counter_gflop": round(counted, 2),
        "convolutions": table,
    }


def _print(res: dict, peak: float) -> None:
    conv_ms = sum(r["forward_ms"] + r["backward_ms"] for r in res["convolutions"])
    step_s = res["step_ms"] / 1e3
    print(
        f"\n{res['variant']}: step {res['step_ms']:.0f} ms (profiled), convolutions {conv_ms:.0f} ms, "
        f"everything else {res['other_ms']:.0f} ms; {res['conv_gflop']:.1f} GFLOP by shapes, "
        f"{res['flop_counter_gflop']:.1f} by torch's counter; step at "
        f"{res['flop_counter_gflop'] / step_s / peak:.0%} of the peak, convolutions alone at "
        f"{res['conv_gflop'] / (conv_ms / 1e3) / peak:.0%}"
    )
    print("| input (N, C, H, W) | weight (O, I, kh, kw) | fwd ms | bwd ms | share of step | % of peak |")
    print("|---|---|---|---|---|---|")
    for r in res["convolutions"][:15]:
        ms = r["forward_ms"] + r["backward_ms"]
        print(
            f"| {tuple(r['input'])} | {tuple(r['weight'])} | {r['forward_ms']:.0f} | {r['backward_ms']:.0f} | "
            f"{ms / res['step_ms']:.0%} | {r['gflop'] / (ms / 1e3) / peak:.0%} |"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", default="Du,Ru,Dw,Rw")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--name", default="cpu")
    args = ap.parse_args()
    cpu = torch.device("cpu")
    peak_start = matmul_peak(cpu, torch.float32) / 1e9
    results = [profile_variant(v, args.size, args.batch, args.steps) for v in args.variants.split(",")]
    peak_end = matmul_peak(cpu, torch.float32) / 1e9
    peak = max(peak_start, peak_end)
    print(f"fp32 matmul peak {peak_start:.1f} GFLOP/s at the start, {peak_end:.1f} at the end; fractions of {peak:.1f}")
    for res in results:
        _print(res, peak)
    out = Path(__file__).parent / "results" / "speed" / f"step_layers-{args.name}.json"
    doc = {
        "command": f"OMP_NUM_THREADS={torch.get_num_threads()} PYTHONPATH=src python benchmarks/step_layers.py "
        f"--variants {args.variants} --size {args.size} --batch {args.batch} --steps {args.steps} --name {args.name}",
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(),
        "peak_gflop_s": {"start": round(peak_start, 1), "end": round(peak_end, 1)},
        "variants": results,
    }
    atomic_write_json(out, doc)
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
