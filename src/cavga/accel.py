"""How a run uses its hardware: bf16 autocast, channels_last, torch.compile, pinned host memory.

The numerics-changing options (``train.bf16``, ``train.channels_last``) act on CUDA only, so a CPU
run stays bit-for-bit what it was: bf16 is slower on a CPU without bf16 matrix units, and a
channels_last training step gained 0.5-6.5% here (benchmarks/train_layout.py); prediction, which
gains 10-40%, always runs channels_last (``cavga.evidence.MEMORY_FORMAT``).
``train.compile`` compiles the decoder and the discriminator in place (state-dict keys unchanged);
the encoder is left eager, since Grad-CAM differentiates through it twice and compiled graphs do
not support double backward. docs/performance.md has the measurements behind each default.
"""

from __future__ import annotations

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


def accel_for(train: TrainConfig, device: torch.device, force: bool = False) -> Accel:
    """The options of ``train`` that apply on ``device`` (bf16 and channels_last: CUDA only,
    unless ``force``, which the speed benchmark and tests use to exercise them on a CPU)."""
    on = device.type == "cuda" or force
    return Accel(
        device=device,
        autocast_dtype=torch.bfloat16 if train.bf16 and on else None,
        channels_last=train.channels_last and on,
        compile=train.compile,
    )
