"""``cavga export``: write a run's inference path as TorchScript or ONNX, and load such a file back.

The file carries what a user needs beside the graph, as JSON under the key ``cavga``: the image
size, the variant, the score normaliser, the score and mask thresholds and the run's configuration
(TorchScript: an extra file ``cavga.json``; ONNX: a ``metadata_props`` entry).
"""

from __future__ import annotations

import json
import math
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..config import RunConfig, from_dict, to_dict
from ..config.checks import in_range
from ..config.schema import MASK_GATES
from ..data.inputs import check_model_batch
from ..errors import CavgaError
from ..inference import Predictor
from ..io_utils import atomic_write, write_serialised
from ..runtime import of_type, shown
from .graph import InferenceGraph

FORMATS = {"torchscript": ".pt", "onnx": ".onnx"}
META_KEY = "cavga"
OUTPUTS = ("score", "anomaly_map", "mask", "raw_score")


@contextmanager
def _quiet_jit():
    """TorchScript (and the TorchScript-based ONNX exporter, which needs no onnxscript) still work in
    this torch; their deprecation notices are not the user's to act on."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.jit\..*deprecated")
        warnings.filterwarnings("ignore", message=r".*legacy TorchScript-based ONNX export")
        warnings.filterwarnings("ignore", message=r"The feature will be removed")
        # EfficientNet-Lite0's TF-"SAME" padding is computed from the input's size: fixed by the run's
        # image size, so the constant the tracer records is the right one
        warnings.filterwarnings("ignore", message=r"Converting a tensor to a Python (float|boolean)")
        warnings.filterwarnings("ignore", message=r"Constant folding - Only steps=1")
        yield


def export_format(out: str | Path, fmt: str | None) -> str:
    """The format asked for, or the one ``out``'s extension names; ``out`` must be a file name with
    that format's extension (``cavga predict`` tells an exported model by it), checked before any work."""
    if fmt is not None and fmt not in FORMATS:
        raise CavgaError(f"--format {fmt}: not one of {', '.join(FORMATS)}")
    named = next((name for name, ext in FORMATS.items() if Path(out).suffix.lower() == ext), None)
    if named is None and fmt is None:
        raise CavgaError(f"{out}: cannot tell the format from the extension; name it .pt (torchscript) or .onnx")
    if fmt is not None and named != fmt:
        raise CavgaError(
            f"--out {out}: the name of an exported {fmt} model must end in {FORMATS[fmt]} (predict reads it by that)"
        )
    if Path(out).is_dir():
        raise CavgaError(f"--out {out}: is a folder; give the model's file name")
    return named


def metadata(predictor: Predictor) -> dict[str, Any]:
    """What travels with the exported graph."""
    cfg = predictor.cfg
    return {
        "format": 1,
        "variant": cfg.model.label,
        "image_size": cfg.data.image_size,
        "input": "image (B, 3, S, S) float32 RGB in [0, 1], resized to S x S (bilinear)",
        "outputs": list(OUTPUTS),
        "score_threshold": cfg.infer.score_threshold,
        "mask_threshold": predictor.mask_threshold,
        "mask_peak_fraction": predictor.mask_peak_fraction,
        "mask_gate": "verdict" if predictor.mask_gate else "none",  # applied in the graph's mask output
        # infer.mask_min_area: connected regions are no graph operator, so the graph's mask output keeps
        # every region and `cavga predict` drops the smaller ones after it (cavga.min_area)
        "mask_min_area": predictor.mask_min_area,
        "normalizer": None if predictor.score_normalizer is None else {
            "lo": predictor.score_normalizer.lo,
            "hi": predictor.score_normalizer.hi,
            "quantile": predictor.score_normalizer.quantile,
            "rank": predictor.score_normalizer.rank,  # infer.normalizer_rank: how hi was read off the held-out scores
        },
        "config": to_dict(cfg),
    }  # fmt: skip


def export_run(
    run_dir: str | Path, out: str | Path, fmt: str | None = None, infer: list[str] | None = None, opset: int = 17
) -> Path:
    """Export a finished run's inference path to ``out`` (TorchScript or ONNX); return the path."""
    fmt = export_format(out, fmt)
    predictor = Predictor.from_run(run_dir, "cpu", infer)
    if predictor.cfg.model.is_baseline:
        raise CavgaError(f"{run_dir}: the run is {predictor.cfg.model.variant}'s; export takes CAVGA runs only")
    if predictor.cfg.data.resize != "stretch":  # the graph takes square inputs and scores all of them
        raise CavgaError(
            f"{run_dir}: data.resize is {predictor.cfg.data.resize}; export takes stretch-resized runs only"
        )
    graph = InferenceGraph(predictor).eval()
    meta = json.dumps(metadata(predictor))
    size = predictor.cfg.data.image_size
    example = torch.rand(2, 3, size, size)  # (B, 3, S, S)
    if fmt == "torchscript":
        with torch.no_grad(), _quiet_jit():
            traced = torch.jit.trace(graph, example, check_trace=False)
            extra = {f"{META_KEY}.json": meta}

            def save(f) -> None:
                torch.jit.save(traced, f, _extra_files=extra)

            return atomic_write(out, lambda tmp: write_serialised(tmp, save))  # a full disk: one line
    return atomic_write(out, lambda tmp: _write_onnx(graph, example, tmp, meta, opset))


def _write_onnx(graph: InferenceGraph, example: Tensor, path: str, meta: str, opset: int) -> None:
    try:
        import onnx
    except ImportError:
        raise CavgaError("ONNX export needs the onnx package: pip install 'cavga[export]'") from None
    with torch.no_grad(), _quiet_jit():
        torch.onnx.export(
            graph,
            (example,),
            path,
            input_names=["image"],
            output_names=list(OUTPUTS),
            dynamic_axes={name: {0: "batch"} for name in ("image", *OUTPUTS)},
            opset_version=opset,
            dynamo=False,
        )
    proto = onnx.load(path)
    entry = proto.metadata_props.add()
    entry.key, entry.value = META_KEY, meta
    onnx.checker.check_model(proto)
    onnx.save(proto, path)


@dataclass
class ExportedBatch:
    """An exported model's answers for a batch, on the CPU."""

    score: Tensor  # (B,)
    label: Tensor  # (B,) long: score >= score_threshold
    anomaly_map: Tensor  # (B, S, S) in [0, 1]
    mask: Tensor  # (B, S, S) bool
    raw_score: Tensor  # (B,)


class ExportedPredictor:
    """Runs a file written by ``cavga export`` (TorchScript with torch, ONNX with onnxruntime);
    ``predict_batch`` answers as :meth:`Predictor.predict_batch` does, for ``cavga predict``."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        load = _load_onnx if self.path.suffix.lower() == ".onnx" else _load_torchscript
        self._run, meta, graph_size = load(self.path)
        self.meta = meta
        self.cfg: RunConfig = _checked_meta(meta, self.path, graph_size)
        self.mask_threshold = float(meta["mask_threshold"])
        self.mask_peak_fraction = float(meta.get("mask_peak_fraction", 0.0))  # exported before it existed: 0
        self.mask_gate = meta.get("mask_gate") == "verdict"  # exported before it existed: every mask kept
        self.mask_min_area = float(meta.get("mask_min_area", 0.0))  # applied after the graph (answer_mask)

    def predict_batch(self, x: Tensor, valid: Tensor | None = None) -> ExportedBatch:
        """As :meth:`Predictor.predict_batch`; exported runs are stretch-resized (``valid`` is None)."""
        check_model_batch(x, self.cfg.data.image_size)  # a uint8 batch would pass as 0..255 floats
        score, amap, mask, raw = self._answers(self._run(x.float().contiguous()), x)
        return ExportedBatch(score, (score >= self.cfg.infer.score_threshold).long(), amap, mask, raw)

    def _answers(self, outs, x: Tensor) -> tuple[Tensor, ...]:
        """The graph's outputs ``outs`` for the batch ``x`` (B, 3, S, S), checked: (B,), (B, S, S), (B, S, S),
        (B,) (a TorchScript graph's input size cannot be read before it runs; it answers at its own)."""
        b, s = x.shape[0], self.cfg.data.image_size
        want = ((b,), (b, s, s), (b, s, s), (b,))
        got = tuple(tuple(o.shape) if isinstance(o, Tensor) else type(o).__name__ for o in outs)
        if got != want:
            why = f"; its metadata's image_size {s} is not the graph's" if len(got) == len(want) else ""
            raise CavgaError(
                f"{self.path}: the graph answered a {tuple(x.shape)} batch with outputs of shapes {got}, "
                f"not {want} ({', '.join(OUTPUTS)}){why}"
            )
        return tuple(outs)

    def predict(self, images):
        """As :meth:`Predictor.predict` (:func:`cavga.api.predict_images`)."""
        from ..api import predict_images

        return predict_images(self, images)


def is_exported_model(path: str | Path) -> bool:
    """A file (not a run folder) with an exported model's extension."""
    p = Path(path)
    return p.is_file() and p.suffix.lower() in FORMATS.values()


def _load_torchscript(path: Path):
    extra = {f"{META_KEY}.json": ""}
    try:
        with _quiet_jit():
            module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    except Exception as e:  # noqa: BLE001 - any unreadable file is reported the same way
        raise CavgaError(
            f"{path}: not a TorchScript model ({type(e).__name__}); export one with `cavga export`"
        ) from None
    meta = _parse_meta(extra[f"{META_KEY}.json"], path)
    _check_output_count(module, path)
    module.eval()

    def run(x: Tensor):
        with torch.inference_mode():
            try:
                outs = module(x)
            except torch.jit.Error as e:
                raise CavgaError(f"{path}: the graph failed on a {tuple(x.shape)} batch ({_reason(e)})") from None
        return outs if isinstance(outs, tuple) else (outs,)

    return run, meta, None


def _check_output_count(module, path: Path) -> None:
    """A TorchScript graph returns the four outputs (its signature says how many, where it says)."""
    try:
        returns = module.forward.schema.returns
    except (AttributeError, RuntimeError):
        return
    kind = returns[0].type if len(returns) == 1 else None
    if isinstance(kind, torch.TupleType):
        n = len(kind.elements())
    elif isinstance(kind, torch.TensorType):
        n = 1
    else:  # a list, or no single return: told by predict_batch
        return
    if n != len(OUTPUTS):
        raise CavgaError(
            f"{path}: the graph returns {n} output(s), not the {len(OUTPUTS)} of `cavga export` ({', '.join(OUTPUTS)})"
        )


def _reason(e: BaseException) -> str:
    """The TorchScript interpreter's error in one line: its last line says what failed."""
    text = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return f"{type(e).__name__}: {text[-1] if text else ''}".rstrip(": ")


def _load_onnx(path: Path):
    try:
        import onnxruntime as ort
    except ImportError:
        raise CavgaError("running an ONNX model needs onnxruntime: pip install 'cavga[export]'") from None
    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001
        raise CavgaError(f"{path}: not a readable ONNX model ({type(e).__name__})") from None
    meta = _parse_meta(session.get_modelmeta().custom_metadata_map.get(META_KEY, ""), path)
    inputs, outputs = session.get_inputs(), [o.name for o in session.get_outputs()]
    if [i.name for i in inputs] != ["image"] or outputs != list(OUTPUTS):
        raise CavgaError(
            f"{path}: the graph takes {[i.name for i in inputs]} and returns {outputs}, not ['image'] and "
            f"{list(OUTPUTS)} as `cavga export` writes"
        )
    shape = inputs[0].shape  # (batch, 3, S, S)
    size = shape[2] if len(shape) == 4 and isinstance(shape[2], int) and shape[2] == shape[3] else None

    def run(x: Tensor):
        outs = session.run(list(OUTPUTS), {"image": x.numpy()})
        return tuple(torch.from_numpy(np.asarray(o)) for o in outs)

    return run, meta, size


def _parse_meta(text: str, path: Path) -> dict[str, Any]:
    try:
        meta = json.loads(text)
    except ValueError:
        meta = None
    if not isinstance(meta, dict) or "config" not in meta or "mask_threshold" not in meta:
        raise CavgaError(f"{path}: holds no cavga metadata; was it written by `cavga export`?")
    return meta


# The metadata's numbers beside its config: (key, value when absent, low, high, low open, high open), in
# the ranges of the config's checks (mask_threshold: the threshold in use, just above 1 at most)
NUMBERS = (
    ("mask_threshold", None, 0.0, math.inf, False, False),
    ("mask_peak_fraction", 0.0, 0.0, 1.0, False, True),  # exported before it existed: 0
    ("mask_min_area", 0.0, 0.0, 1.0, False, True),
    ("score_threshold", 0.5, 0.0, 1.0, True, False),
)


def _checked_meta(meta: dict[str, Any], path: Path, graph_size: int | None) -> RunConfig:
    """The run configuration of an exported model's metadata, checked as a run's config is, and the
    metadata's other fields checked against it; each problem is one line naming ``path`` and the field.
    ``graph_size``: the input size the graph takes, where the file says it (ONNX)."""
    where = f"{path} (metadata)"
    cfg = from_dict(meta["config"], where, saved=True)
    try:
        cfg.validate()
    except CavgaError as e:
        raise CavgaError(f"{where}: {e}") from None
    for key, absent, low, high, low_open, high_open in NUMBERS:
        value = meta.get(key, absent)
        if not of_type(value, float):  # a bool is no number
            raise CavgaError(f"{where}: {key}: {shown(value)} is not a number")
        in_range(f"{where}: {key}", value, low, high, low_open, high_open)
    if meta.get("mask_gate", "none") not in MASK_GATES:
        raise CavgaError(f"{where}: mask_gate: {shown(meta['mask_gate'])} is not one of {', '.join(MASK_GATES)}")
    if not isinstance(meta.get("normalizer"), (dict, type(None))):
        raise CavgaError(f"{where}: normalizer: {shown(meta['normalizer'])} is neither a mapping nor null")
    size = cfg.data.image_size
    if meta.get("image_size", size) != size:
        raise CavgaError(f"{where}: image_size: {shown(meta['image_size'])} is not the config's data.image_size {size}")
    if graph_size is not None and graph_size != size:
        raise CavgaError(f"{where}: data.image_size: {size} is not the size the graph takes, {graph_size}")
    return cfg
