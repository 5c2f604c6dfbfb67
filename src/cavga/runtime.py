"""Device choice, seeding and checkpoint files."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from .errors import CavgaError
from .io_utils import atomic_write

CHECKPOINT = "checkpoint.pt"
# Keys every cavga checkpoint holds; anything else is not a run's checkpoint.
CHECKPOINT_KEYS = ("config", "model", "epoch")


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present; asking for a device this machine lacks is an error, not a fallback."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise CavgaError(f"--device {name}: CUDA is not available on this machine (use --device cpu or auto)")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise CavgaError(f"--device {name}: not a device name (auto, cpu, cuda, cuda:N)") from None
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise CavgaError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise CavgaError(f"--device {name}: MPS is not available on this machine (use --device cpu or auto)")
    if device.type not in ("cpu", "cuda", "mps"):
        raise CavgaError(f"--device {name}: not supported (auto, cpu, cuda, cuda:N, mps)")
    return device


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


@contextmanager
def deterministic_kernels(on: bool = True) -> Iterator[None]:
    """``train.deterministic``: deterministic kernels for the duration, torch's settings restored
    after. Operations without a deterministic CUDA kernel warn rather than fail (``warn_only``);
    cuBLAS gets the workspace setting it needs (``CUBLAS_WORKSPACE_CONFIG``, unless already set)."""
    if not on:
        yield
        return
    cudnn = torch.backends.cudnn
    before = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
    before_cudnn = (cudnn.benchmark, cudnn.deterministic)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    cudnn.benchmark, cudnn.deterministic = False, True
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
        cudnn.benchmark, cudnn.deterministic = before_cudnn


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """Write atomically and read the file back before it replaces the previous checkpoint (memory-
    mapped: the archive and every record in it are checked without copying the tensors again)."""

    def write(tmp: str) -> None:
        torch.save(state, tmp)
        _safe_load(tmp, mmap=True)  # a broken or unsafe file never replaces a good one

    return atomic_write(path, write, durable=True)


def load_checkpoint(path: str | Path, required: tuple[str, ...] = CHECKPOINT_KEYS) -> dict[str, Any]:
    """A run's checkpoint (or another of cavga's files of tensors, holding the keys ``required``),
    loaded without executing code (``weights_only``); every problem is one line."""
    path = Path(path)
    if not path.is_file():
        raise CavgaError(f"{path}: no checkpoint here (train a model first with `cavga train`)")
    try:
        state = _safe_load(path)
    except Exception as e:  # noqa: BLE001 - any unreadable checkpoint is reported the same way
        raise CavgaError(f"{path}: cannot read checkpoint ({_reason(e)})") from None
    if not isinstance(state, dict):
        raise CavgaError(f"{path}: not a cavga checkpoint (holds a {type(state).__name__}, not a dict)")
    missing = [k for k in required if k not in state]
    if missing or not isinstance(state.get("config", {}), dict):
        raise CavgaError(f"{path}: not a cavga checkpoint (no {', '.join(missing) or 'config mapping'})")
    return state


def _safe_load(path: str | Path, mmap: bool = False) -> Any:
    """``torch.load`` restricted to tensors and plain containers: a crafted pickle cannot run code."""
    return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)


def _reason(e: BaseException) -> str:
    """One line for an exception (torch's refusals of unsafe pickles run to a page of advice)."""
    text = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    if text and text[0].startswith("Weights only load failed"):
        detail = next((ln for ln in text[1:] if "GLOBAL" in ln or "Unsupported" in ln), "")
        return f"refused to load Python objects, which could run code: {detail}".rstrip(": ")
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__
