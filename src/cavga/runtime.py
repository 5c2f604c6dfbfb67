"""Device choice, seeding and checkpoint files."""

from __future__ import annotations

import os
import random
import types
import typing
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from .errors import CavgaError
from .io_utils import atomic_write, write_serialised

CHECKPOINT = "checkpoint.pt"
# Keys every cavga checkpoint holds; anything else is not a run's checkpoint.
CHECKPOINT_KEYS = ("config", "model", "epoch")
# The types of the fields a run's checkpoint holds beside its config, read wherever one is loaded. A run
# from before a field existed lacks it (absent is fine); None: not yet fitted or decided.
RUN_FIELDS: dict[str, tuple[type, ...]] = {
    "model": (Mapping,),
    "epoch": (int,),
    "history": (list,),
    "epoch_choice": (Mapping, type(None)),
    "normalizer": (Mapping, type(None)),
}
_KINDS = {Mapping: "a mapping", int: "an integer", list: "a list", type(None): "None", torch.Tensor: "a tensor"}


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
        write_serialised(tmp, lambda f: torch.save(state, f))  # a full disk: one line (atomic_write)
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
    if required == CHECKPOINT_KEYS:
        check_fields(state, path, RUN_FIELDS)
        if state["epoch"] < 0:
            raise CavgaError(f"{path}: epoch: {state['epoch']} is below 0 (a damaged or edited checkpoint)")
    return state


def check_fields(state: dict[str, Any], path: str | Path, kinds: dict[str, tuple[type, ...]]) -> None:
    """Each field of ``kinds`` that ``state`` holds is of one of its types (a bool is no integer);
    else a one-line CavgaError naming the checkpoint ``path`` and the field."""
    for key, allowed in kinds.items():
        value = state.get(key)
        if key in state and (isinstance(value, bool) or not isinstance(value, allowed)):
            expected = " or ".join(_KINDS.get(t, t.__name__) for t in allowed)
            raise CavgaError(
                f"{path}: {key} holds a {type(value).__name__}, not {expected} (a damaged or edited checkpoint)"
            )


def of_type(value: Any, hint: Any) -> bool:
    """Whether a value read from a checkpoint is of the annotation ``hint`` (a float may be an int;
    a bool is no number)."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return any(of_type(value, a) for a in args)
    if typing.get_origin(hint) is list:
        return isinstance(value, list) and all(of_type(v, args[0]) for v in value)
    if hint in (int, float) and isinstance(value, bool):
        return False
    return isinstance(value, (int, float) if hint is float else hint)


def type_words(hint: Any) -> str:
    """An annotation as an error says it: "a number or a word or null"."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join(type_words(a) for a in typing.get_args(hint))
    if typing.get_origin(hint) is list:
        return f"a list of {type_words(typing.get_args(hint)[0]).split(' ', 1)[1]}s"
    names = {float: "a number", int: "an integer", str: "a word", bool: "true or false", type(None): "null"}
    return names.get(hint, getattr(hint, "__name__", str(hint)))


def shown(value: Any) -> str:
    """A value for an error line, cut to 60 characters."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


@contextmanager
def weights_of(path: str | Path) -> Iterator[None]:
    """Around ``load_state_dict`` of a checkpoint's weights: weights of another network (a tensor of
    another shape, a missing or unexpected key) are a one-line CavgaError naming ``path``."""
    try:
        yield
    except RuntimeError as e:
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        if not lines or not lines[0].startswith("Error(s) in loading state_dict"):
            raise
        problems = lines[1:] or lines
        first = problems[0] if len(problems[0]) <= 200 else problems[0][:200] + "..."
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise CavgaError(f"{path}: not this run's network: {first}{more}") from None


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
