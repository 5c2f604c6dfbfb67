"""The Python interface: load a trained run or an exported model, and predict images, in memory or
on disk, as ``cavga predict`` does (docs/api.md).

    import cavga
    predictor = cavga.load("runs/bottle-Du")           # a run folder, or a .onnx / .pt from `cavga export`
    p = predictor.predict("new/001.png")                # or a PIL image, a numpy array, a torch tensor
    p.verdict, p.score, p.anomaly_map, p.mask           # "anomalous", 0.83, (H, W) float32, (H, W) bool
    ps = predictor.predict([frame0, frame1, frame2])    # a list (or a 4-D batch) gives a list

Maps and masks come back at each image's own size, thresholded and gated exactly as ``cavga
predict`` writes them (:func:`cavga.image_scores.answer_mask`).
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .data.inputs import ImageInput, model_input
from .errors import CavgaError
from .image_scores import answer_mask, native_map
from .inference import Prediction, Predictor
from .predict import load_predictor

__all__ = ["ImageInput", "Prediction", "Predictor", "load", "predict_images"]


def load(model: str | Path, device: str | torch.device | None = "auto", infer: Sequence[str] | None = None):
    """A run folder's :class:`Predictor`, or an ``ExportedPredictor`` for a file written by ``cavga
    export`` (its settings fixed at export; it runs on the CPU). ``infer``: inference overrides as
    ``--set`` takes them, ``["infer.mask_gate=verdict"]`` (run folders only). Errors are one-line
    :class:`CavgaError`. Loading leaves torch's global random state as it was."""
    if isinstance(infer, str):
        raise CavgaError(f"infer={infer!r}: give a list of 'infer.KEY=VALUE' strings, e.g. [{infer!r}]")
    if not isinstance(model, (str, os.PathLike)):
        raise CavgaError(f"model={model!r}: give the path of a run folder or of a file written by cavga export")
    device = "auto" if device is None else str(device)  # a torch.device reads as its name, "cuda:0"
    with torch.random.fork_rng(devices=[]):  # building the networks draws initial weights
        return load_predictor(model, device, None if infer is None else list(infer))


_NOT_A_BATCH = (str, bytes, Path, Image.Image, np.ndarray, torch.Tensor)


def _batch_items(images: object) -> list | None:
    """The images of a batch: a list, tuple or other iterable (a generator) of images, or a 4-D
    array (B, H, W, C) or tensor (B, C, H, W); None for one image."""
    if isinstance(images, (np.ndarray, torch.Tensor)) and images.ndim == 4:
        channels_last = isinstance(images, np.ndarray)
        c = images.shape[3 if channels_last else 1]
        if c not in (1, 3, 4) and images.shape[1 if channels_last else 3] in (1, 3, 4):
            layout, fix = (
                ("(B, H, W, C)", "a.transpose(0, 2, 3, 1)")
                if channels_last
                else ("(B, C, H, W)", "t.permute(0, 3, 1, 2)")
            )
            raise CavgaError(
                f"images: a {type(images).__name__} batch is {layout}, not of shape {tuple(images.shape)}: use {fix}"
            )
        return list(images)
    if isinstance(images, _NOT_A_BATCH) or not isinstance(images, Iterable):
        return None
    if isinstance(images, (Mapping, io.IOBase)):  # iterating them gives keys or lines, not images
        kind = "a mapping" if isinstance(images, Mapping) else "an open file"
        raise CavgaError(
            f"images: {kind} ({type(images).__name__}) is not an image or a batch; give paths, "
            "PIL images, arrays or tensors, or a list of them (an open file: Image.open(f))"
        )
    return list(images)


def predict_images(predictor, images: ImageInput | Iterable[ImageInput]) -> Prediction | list[Prediction]:
    """One :class:`Prediction` for one image, a list for a list, tuple or generator of them, or for a
    4-D batch (numpy (B, H, W, C), torch (B, C, H, W)); batched by the run's ``infer.batch_size``."""
    items = _batch_items(images)
    return _predict_all(predictor, [images])[0] if items is None else _predict_all(predictor, items)


def _predict_all(predictor, items: list[ImageInput]) -> list[Prediction]:
    cfg = predictor.cfg
    size, resize, bs = cfg.data.image_size, cfg.data.resize, cfg.infer.batch_size
    out: list[Prediction] = []
    for start in range(0, len(items), bs):
        x, valid, sizes, paths = model_input(items[start : start + bs], size, resize, start)  # (B, 3, S, S)
        pred = predictor.predict_batch(x, valid)
        for j, path in enumerate(paths):
            amap = native_map(pred.anomaly_map[j], sizes[j], resize)  # (H, W)
            label = int(pred.label[j])
            mask = answer_mask(predictor, amap, label)  # (H, W)
            out.append(Prediction(path, float(pred.score[j]), label, amap, mask, float(pred.raw_score[j])))
    return out
