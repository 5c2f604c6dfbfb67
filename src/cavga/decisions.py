"""Training's end: the ``auto`` inference settings decided on painted held-out normals.

Called once a CAVGA run's last epoch is trained (``cavga.train``; with ``train.validate_every``, on
the chosen epoch's weights, :mod:`cavga.epoch_choice`) and by ``benchmarks/redecide.py`` on a
finished run.
"""

from __future__ import annotations

import copy
from typing import Any

import torch

from . import data as D
from .config import RunConfig
from .config.resolve import map_blur, score_fade
from .held_out import eval_loader, fit_normalizer
from .image_scores import Normalizer
from .inference import Predictor
from .map_choice import AUTO_SETTINGS, resolve_auto_settings, resolved_enlarged, resolved_shifted
from .mask_threshold import decide_held_out_mask_quantile
from .networks import CAVGA
from .normal_level import LEVEL_KEY, fit_level
from .painted_decisions import IMAGE_SCORE_CHOICES, asked_maps, decide_on_painted, direction_options
from .painting import held_out_images
from .runfolder import RunData

# infer.image_score: auto on a one-class layout (MNIST, Fashion-MNIST, CIFAR-10, digits) chooses among
# the whole-image reconstruction scores only. There the anomalies are images of other classes, not local
# defects: the painted check stands in for a blemish on a normal image, which the map's peak ranks well
# (a local score for a local change) and a changed shape is not. Both read the whole image, as the paper's
# test-time score does (the reconstruction difference, Sec. 3.1 after Eq. 4). Written after session 44's
# distilled MNIST grid chose "map" for digit 1 in seeds 1 and 2 (painted 0.920 and 0.910 against 0.909 and
# 0.908 for "bce") and that digit's test AUROC was 0.600 and 0.530 (docs/results.md says so); every run of
# the session-22 and session-40 MNIST grids had chosen "bce".
CLASS_ANOMALY_SCORES = ("paper", "bce")


def finish_decisions(model: CAVGA, run_data: RunData, cfg: RunConfig, device: torch.device) -> dict[str, Any]:
    """What training's end adds to the checkpoint: the ``auto`` inference settings decided on
    painted held-out normals, then (CAVGA-u) the attention's normal level for the map so read, the
    score normaliser and map statistics of the map so chosen, then (``infer.mask_quantile: auto``)
    the mask quantile, which needs those statistics."""
    decided = _decide_auto_settings(model, run_data, cfg, device)
    resolved = copy.deepcopy(cfg)  # the map statistics are of the map in use (1 - A or A, A_ca or 1 - A_cn)
    resolve_auto_settings(resolved, decided)
    held_out = run_data.val or run_data.train  # none held out: the training images (`cavga train` warns)
    level = None
    if cfg.model.has_attention_direction:  # stored whatever the direction: a run can be read two-sided later
        shifted, enlarged = resolved_shifted(resolved), resolved_enlarged(resolved)
        level = fit_level(model, eval_loader([r for r in held_out if r.label == 0], cfg), device, shifted, enlarged)
        decided[LEVEL_KEY] = level
    decided["normalizer"] = fit_normalizer(model, held_out, resolved, device, level=level)  # held-out
    if cfg.infer.mask_quantile == "auto":  # with an auto mask margin and peak fraction, if asked
        decided.update(_decide_mask_quantile(model, run_data, cfg, resolved, decided["normalizer"], device, level))
    return decided


def _decide_auto_settings(model: CAVGA, run_data: RunData, cfg: RunConfig, device: torch.device) -> dict[str, Any]:
    """The map and score settings left at ``auto`` (``AUTO_SETTINGS`` but the mask quantile, which
    needs the map statistics: :func:`_decide_mask_quantile`), resolved on painted held-out normals
    (:func:`cavga.painted_decisions.decide_on_painted`), for the checkpoint."""
    direction, weak_map = asked_maps(cfg)
    image_score, shifted = cfg.infer.image_score, cfg.infer.shifted_map
    enlarged = cfg.infer.enlarged_map if cfg.model.reads_any_size else False  # CAVGA-w, R*: never
    if "auto" not in (direction, image_score, weak_map, shifted, enlarged):
        return {}
    if not any(r.label == 0 for r in run_data.val):  # none held out (cavga.data.why_none_held_out)
        asked = {"attention_direction": direction, "image_score": image_score, "weak_map": weak_map}
        asked["shifted_map"], asked["enlarged_map"] = shifted, enlarged
        return {
            key: {key: AUTO_SETTINGS[key], "protocol": "no held-out normals"} if value == "auto" else None
            for key, value in asked.items()
        }
    images, boxes = held_out_images(run_data.val, cfg.data.image_size, cfg.data.resize)  # (N, 3, S, S)
    return decide_on_painted(
        model,
        images,
        cfg.infer.batch_size,
        device,
        direction,
        image_score,
        weak_map,
        boxes,
        shifted=shifted,
        enlarged=enlarged,
        blur=map_blur(cfg),
        image_scores=CLASS_ANOMALY_SCORES if cfg.data.layout in D.ONE_CLASS_LAYOUTS else IMAGE_SCORE_CHOICES,
        score_fade=score_fade(cfg),
        **direction_options(cfg),
    )


def _decide_mask_quantile(
    model: CAVGA,
    run_data: RunData,
    cfg: RunConfig,
    resolved: RunConfig,
    normalizer: dict,
    device: torch.device,
    level: torch.Tensor | None,
) -> dict[str, Any]:
    """``infer.mask_quantile: auto`` (and an auto ``mask_margin``, ``mask_peak_fraction``) decided on
    the same painted held-out normals, with the other settings ``resolved`` as training decided them
    (:func:`cavga.mask_threshold.decide_mask_quantile`)."""
    held_out_stats = Normalizer(**normalizer)  # fitted just now at resolved.infer.normalizer_quantile
    predictor = Predictor(model, resolved, held_out_stats, device, level)
    asked = cfg.infer.mask_margin, cfg.infer.mask_peak_fraction  # "auto" or a number
    return decide_held_out_mask_quantile(predictor, run_data.val, *asked)
