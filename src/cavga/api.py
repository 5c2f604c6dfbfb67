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

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from .data.inputs import ImageInput, model_input
from .image_scores import answer_mask, native_map
from .inference import Prediction, Predictor
from .predict import load_predictor

__all__ = ["ImageInput", "Prediction", "Predictor", "load", "predict_images"]


def load(model: str | Path, device: str = "auto", infer: list[str] | None = None):
    """A run folder's :class:`Predictor`, or an ``ExportedPredictor`` for a file written by ``cavga
    export`` (its settings fixed at export). ``infer``: inference overrides as ``--set`` takes them,
    ``["infer.mask_gate=verdict"]`` (run folders only). Errors are one-line :class:`CavgaError`."""
    return load_predictor(model, device, infer)


def _is_batch(images: object) -> bool:
    """A list or tuple of images, or one 4-D array or tensor (B, ...)."""
    return isinstance(images, (list, tuple)) or (isinstance(images, (np.ndarray, torch.Tensor)) and images.ndim == 4)


def predict_images(predictor, images: ImageInput | Sequence[ImageInput]) -> Prediction | list[Prediction]:
    """One :class:`Prediction` for one image, a list for a list (or a 4-D batch: numpy (B, H, W, C),
    torch (B, C, H, W)); batched by the run's ``infer.batch_size``."""
    if not _is_batch(images):
        return _predict_all(predictor, [images])[0]
    return _predict_all(predictor, list(images))


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
