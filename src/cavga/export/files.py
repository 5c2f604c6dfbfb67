"""``cavga export``: write a run's inference path as TorchScript or ONNX, and load such a file back.

The file carries what a user needs beside the graph, as JSON under the key ``cavga``: the image
size, the variant, the score normaliser, the score and mask thresholds and the run's configuration
(TorchScript: an extra file ``cavga.json``; ONNX: a ``metadata_props`` entry).
"""

from __future__ import annotations

import json
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..config import RunConfig, from_dict, to_dict
from ..errors import CavgaError
from ..inference import Predictor
from ..io_utils import atomic_write
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
            return atomic_write(out, lambda tmp: torch.jit.save(traced, tmp, _extra_files={f"{META_KEY}.json": meta}))
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
        if self.path.suffix.lower() == ".onnx":
            self._run, meta = _load_onnx(self.path)
        else:
            self._run, meta = _load_torchscript(self.path)
        self.meta = meta
        self.cfg: RunConfig = from_dict(meta["config"], f"{path} (metadata)", saved=True)
        self.mask_threshold = float(meta["mask_threshold"])
        self.mask_peak_fraction = float(meta.get("mask_peak_fraction", 0.0))  # exported before it existed: 0
        self.mask_gate = meta.get("mask_gate") == "verdict"  # exported before it existed: every mask kept
        self.mask_min_area = float(meta.get("mask_min_area", 0.0))  # applied after the graph (answer_mask)

    def predict_batch(self, x: Tensor, valid: Tensor | None = None) -> ExportedBatch:
        """As :meth:`Predictor.predict_batch`; exported runs are stretch-resized (``valid`` is None)."""
        score, amap, mask, raw = self._run(x.float().contiguous())
        return ExportedBatch(score, (score >= self.cfg.infer.score_threshold).long(), amap, mask, raw)

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
    module.eval()

    def run(x: Tensor):
        with torch.inference_mode():
            return module(x)

    return run, meta


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

    def run(x: Tensor):
        outs = session.run(list(OUTPUTS), {"image": x.numpy()})
        return tuple(torch.from_numpy(np.asarray(o)) for o in outs)

    return run, meta


def _parse_meta(text: str, path: Path) -> dict[str, Any]:
    try:
        meta = json.loads(text)
    except ValueError:
        meta = None
    if not isinstance(meta, dict) or "config" not in meta or "mask_threshold" not in meta:
        raise CavgaError(f"{path}: holds no cavga metadata; was it written by `cavga export`?")
    return meta
