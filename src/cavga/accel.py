"""How a run uses its hardware: bf16 autocast, channels_last, torch.compile, pinned host memory.

Both numerics-changing options are off by default, so a run is bit-for-bit what it was unless asked.
``train.bf16`` runs the training step (and CAVGA-D's distillation, :mod:`cavga.distill`) under bf16
autocast on CUDA and on the CPU: on a CPU with bf16 instructions (AVX512-BF16 or AMX) a training step
ran 1.7x (128 px) to 2.0-2.2x (256 px) faster and a distillation step 1.8-1.9x, at some cost in IoU
(bottle, two splits: 0.297 and 0.258 against float32's 0.317 and 0.311; docs/performance.md, "bf16 on
a CPU"); on a CPU without them bf16 is emulated and slower, so it is applied (it was asked for) with a
warning.
``train.channels_last`` acts on CUDA only: a CPU channels_last training step gained 0.5-6.5% here
(benchmarks/train_layout.py); prediction, which gains 10-40%, always runs channels_last
(``cavga.evidence.MEMORY_FORMAT``).
``train.compile`` compiles the decoder and the discriminator in place (state-dict keys unchanged);
the encoder is left eager, since Grad-CAM differentiates through it twice and compiled graphs do
not support double backward. docs/performance.md has the measurements behind each default.
"""

from __future__ import annotations

import warnings
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .config import TrainConfig


@dataclass(frozen=True)
class Accel:
    """The hardware options in force for one run on one device."""

    device: torch.device
    autocast_dtype: torch.dtype | None = None  # bf16 autocast around the training step, or None
    channels_last: bool = False
    compile: bool = False

    @property
    def pin_memory(self) -> bool:
        """Pinned host batches make the copy to a CUDA device asynchronous."""
        return self.device.type == "cuda"

    def autocast(self) -> AbstractContextManager:
        if self.autocast_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def prepare(self, *modules: nn.Module) -> None:
        """Move ``modules`` to the device (and memory format) in place."""
        for m in modules:
            m.to(self.device)
            if self.channels_last:
                m.to(memory_format=torch.channels_last)

    def compile_modules(self, model: nn.Module, disc: nn.Module) -> None:
        """Compile the decoder and discriminator in place when ``compile`` is on (see module doc)."""
        if self.compile:
            model.decoder.compile()
            disc.compile()

    def input(self, x: Tensor) -> Tensor:
        """A batch on the device, copied without blocking, in the run's memory format."""
        x = x.to(self.device, non_blocking=self.pin_memory)  # (B, 3, S, S)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes in bf16 natively: CUDA, or a CPU with AVX512-BF16 or AMX (read from
    torch.cpu's checks, private in torch 2.14; a torch without them counts as no)."""
    if device.type == "cuda":
        return True
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return device.type == "cpu" and any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def accel_for(train: TrainConfig, device: torch.device, force: bool = False) -> Accel:
    """The options of ``train`` that apply on ``device``: bf16 on CUDA and the CPU (with a warning
    where the CPU emulates it), channels_last on CUDA only unless ``force``, which the speed benchmark
    and tests use to exercise it on a CPU."""
    if train.bf16 and device.type == "cpu" and not native_bf16(device):
        warnings.warn(
            "train.bf16: this CPU has no bf16 instructions (AVX512-BF16 or AMX), so bf16 is emulated "
            "and usually slower than float32; --set train.bf16=false trains in float32",
            stacklevel=2,
        )
    return Accel(
        device=device,
        autocast_dtype=torch.bfloat16 if train.bf16 else None,
        channels_last=train.channels_last and (device.type == "cuda" or force),
        compile=train.compile,
    )
