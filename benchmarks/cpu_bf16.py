"""Training and distillation steps in float32 against bf16 autocast (``train.bf16``), on this CPU.

For each variant one model per precision, built from the same seed, their full training steps
timed alternately in one process (drift in the machine's speed falls on both; the median of
``--repeats`` rounds); then one step of CAVGA-D's distillation (:mod:`cavga.distill`: the
EfficientNet-Lite0 teacher's forward pass, the DCGAN encoder's forward and backward) the same way,
where the teacher's weights are installed. Whether the CPU has bf16 instructions
(``cavga.accel.native_bf16``) and its fp32 and bf16 matmul rates are printed beside: bf16 pays
only where they are. The measurement behind ``train.bf16`` on a CPU (docs/performance.md,
"bf16 on a CPU"). Prints a table and writes JSON.

    OMP_NUM_THREADS=2 PYTHONPATH=src python benchmarks/cpu_bf16.py --size 256
"""

from __future__ import annotations

from contextlib import nullcontext

import torch
from torch import nn

from cavga.accel import native_bf16
from cavga.backbones import EfficientNetLite0Encoder
from cavga.config.resolve import teacher_available
from cavga.distill import block_outputs, masked_mse, teacher_features
from cavga.networks import DCGANEncoder
from cavga.speed import ab
from cavga.speed.flops import matmul_peak


def distill_step(size: int, batch: int, bf16: bool):
    """One distillation step at ``size`` px on a batch of ``batch`` random images, as
    :func:`cavga.distill.distill_encoder` takes it (strides 4, 8, 16; targets and loss in float32)."""
    autocast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if bf16 else nullcontext
    torch.manual_seed(0)
    teacher = EfficientNetLite0Encoder("imagenet", allow_random_init=False, stride=16).eval().requires_grad_(False)
    encoder, taps, strides = DCGANEncoder(stride=16), [1, 2, 3], [4, 8, 16]
    x = torch.rand(batch, 3, size, size)  # (B, 3, S, S)
    widths = [f.shape[1] for f in teacher_features(teacher, x[:1], strides)]
    heads = nn.ModuleList(nn.Conv2d(encoder.body[i][0].out_channels, c, 1) for i, c in zip(taps, widths, strict=True))
    opt = torch.optim.Adam([*encoder.parameters(), *heads.parameters()], lr=1e-3)
    ones = torch.ones(1, 1, 1, 1)

    def step() -> None:
        with torch.no_grad(), autocast():
            target = [t.float() for t in teacher_features(teacher, x, strides)]  # [(B, C_k, h, w)]
        with autocast():
            pred = [h(f) for h, f in zip(heads, block_outputs(encoder, x, taps), strict=True)]
        loss = sum(masked_mse(p.float(), t, ones) for p, t in zip(pred, target, strict=True))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def main() -> None:
    out = "benchmarks/results/speed/cpu_bf16.json"
    args = ab.parser(__doc__.splitlines()[0], "Du,Dw", 5, out).parse_args()
    peak_before = ab.start(args)
    cpu = torch.device("cpu")
    bf16_peak = matmul_peak(cpu, torch.bfloat16) / 1e9
    rows = []
    precisions = {"fp32": False, "bf16": True}
    steps = {
        v: {p: ab.training_setup(v, args, bf16=b)[3] for p, b in precisions.items()} for v in args.variants.split(",")
    }
    if teacher_available("imagenet"):
        steps["distillation"] = {p: distill_step(args.size, args.batch, b) for p, b in precisions.items()}
    for name, calls in steps.items():
        seconds = ab.alternate(calls, args.repeats)
        rows.append(
            {
                "step": name,
                "ms_per_step": {k: round(1000 * v, 1) for k, v in seconds.items()},
                "speedup": round(seconds["fp32"] / seconds["bf16"], 3),
            }
        )
    table = [
        f"native bf16 (AVX512-BF16 or AMX): {native_bf16(cpu)}; bf16 matmul {bf16_peak:.1f} GFLOP/s",
        "",
        "| step | ms/step: fp32 -> bf16 | speed-up |",
        "|---|---|---|",
    ]
    for r in rows:
        t = r["ms_per_step"]
        table.append(f"| {r['step']} | {t['fp32']} -> {t['bf16']} | x{r['speedup']} |")
    rows.append({"native_bf16": native_bf16(cpu), "matmul_peak_bf16_gflop_s": round(bf16_peak, 2)})
    ab.finish(args, peak_before, rows, table)


if __name__ == "__main__":
    main()
