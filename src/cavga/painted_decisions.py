"""Training's painted decisions: the ``auto`` map and image-score settings, and the epoch check's number.

On painted defects on held-out normal images (:mod:`cavga.painting`; never test images, never real
anomalies), each ``auto`` inference setting keeps the paper's choice unless another ranks the painted
defects better: the map's direction (CAVGA-u) or class map (CAVGA-w), half-cell shifts, the enlarged
view, then the image score. :mod:`cavga.decisions` calls this at training's end, :mod:`cavga.epoch_choice`
every ``train.validate_every`` epochs; ``cavga validate`` (:mod:`cavga.validation`) reports the result.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from . import data as D
from .config import DIRECTION_CANDIDATES, IMAGE_SCORES
from .config.resolve import map_blur
from .evidence import anomaly_evidence
from .image_scores import bce_score, reconstruction_score
from .metrics import image_auroc, pixel_auroc
from .networks import CAVGA
from .normal_level import held_out_departures
from .painting import at_size, content_only, painted_set, protocol_text

IMAGE_SCORE_CHOICES = tuple(s for s in IMAGE_SCORES if s != "auto")  # what infer.image_score: auto chooses from


def decide_on_painted(
    model: CAVGA,
    images: torch.Tensor,
    batch_size: int,
    device: torch.device,
    direction: str = "auto",
    image_score: str = "auto",
    weak_map: str = "auto",
    boxes: list[D.geometry.Box] | None = None,
    seed: int = 0,
    copies: int = 2,
    shifted: bool | str = "auto",
    enlarged: bool | str = False,
    blur: float = 0.0,
    image_scores: tuple[str, ...] = IMAGE_SCORE_CHOICES,
    score_fade: float = 1.0,
    directions: tuple[str, ...] = DIRECTION_CANDIDATES["one_sided"],
    direction_fade: float = 1.0,
) -> dict[str, dict[str, Any] | None]:
    """The ``auto`` inference settings of a trained model, decided on painted defects on held-out
    normals ``images`` (N, 3, S, S) (with their content ``boxes`` when padded); None where a setting
    was not ``auto`` (or does not apply).

    * ``infer.attention_direction`` (CAVGA-u): the paper's 1 - A is kept unless A (unclamped above
      the normal peak) has the higher pixel AUROC on the painted set, i.e. unless the attention
      *rises* on defects; then A is used. ``directions`` are the candidates (``infer.direction_candidates``;
      "two_sided" among them: A's departure either way from its normal level), the first kept on a
      tie; with ``direction_fade`` < 1 (``infer.direction_fade``) they are ranked on the same defects
      faded to U(direction_fade, 1), and the decisions below read the chosen map at full strength.
    * ``infer.weak_map`` (CAVGA-w): the paper's A_ca is kept unless 1 - A_cn has the higher pixel
      AUROC on the painted set; then "normal".
    * ``infer.image_score``: the paper's score (CAVGA-u's reconstruction difference, CAVGA-w's C) is
      kept unless the chosen map's peak ("map") or the reconstruction BCE above its floor ("bce")
      ranks the painted images above the clean ones better (image AUROC); then the better of those.
      ``image_scores`` are the candidates (all three are scored and stored): the one-class layouts
      pass the whole-image scores only (:data:`cavga.decisions.CLASS_ANOMALY_SCORES`). With
      ``score_fade`` < 1 (``infer.score_fade``) they are ranked on a second painted set, the same
      defects faded to U(score_fade, 1), the map read as decided; the full-strength numbers are kept
      beside them (``full_strength_image_auroc``, for the record; the epoch check's guard computes its
      own at full strength).
    * ``infer.shifted_map``: the chosen map is averaged over half-cell shifts of the image where that
      has the higher pixel AUROC on the painted set (decided before the image score, whose "map" is
      the peak of the map so chosen).
    * ``infer.enlarged_map`` (CAVGA-u with a convolutional z): the chosen map is averaged with the
      enlarged image's where that has the higher pixel AUROC on the painted set (decided after the
      shifts, before the image score).

    Every map is read blurred by ``blur`` pixels (``infer.map_blur``, not decided here)."""
    args = (model, images, batch_size, device, direction, image_score, weak_map, boxes, seed, copies, shifted)
    kw = {"enlarged": enlarged, "blur": blur, "image_scores": image_scores, "score_fade": score_fade}
    kw |= {"directions": directions, "direction_fade": direction_fade}
    return _painted_decisions(*args, **kw)[0]


def direction_options(cfg) -> dict[str, Any]:
    """What ``infer.attention_direction: auto`` weighs and on what paint, as the painted decisions take them."""
    return {
        "directions": DIRECTION_CANDIDATES[cfg.infer.direction_candidates],
        "direction_fade": cfg.infer.direction_fade,
    }


def epoch_check(
    model: CAVGA, images: torch.Tensor, boxes: list[D.geometry.Box] | None, cfg, device
) -> tuple[float, float]:
    """On painted held-out normals ``images``: the pixel AUROC of the map ``cfg`` asks for, its ``auto``
    settings decided as :func:`decide_on_painted` decides them (the number ``cavga validate`` reports;
    ``train.validate_every`` chooses the epoch by it), and the image AUROC of the reconstruction BCE
    above its floor (the epoch choice's guard, cavga.epoch_choice)."""
    direction, weak_map = asked_maps(cfg)
    args = (model, images, cfg.infer.batch_size, device, direction, "auto", weak_map, boxes)
    maps_as = {"shifted": cfg.infer.shifted_map, "enlarged": cfg.infer.enlarged_map, "blur": map_blur(cfg)}
    # the image scores at full strength
    decided, maps, masks = _painted_decisions(*args, **maps_as, **direction_options(cfg))
    return pixel_auroc(maps, masks), float(decided["image_score"]["validation_image_auroc"]["bce"])


def asked_maps(cfg) -> tuple[str, str]:
    """``infer.attention_direction`` and ``infer.weak_map`` as asked, "fixed" where the model has no such choice."""
    direction = cfg.infer.attention_direction if cfg.model.has_attention_direction else "fixed"
    return direction, cfg.infer.weak_map if cfg.model.weakly_supervised else "fixed"


def _painted_decisions(
    model,
    images,
    batch_size,
    device,
    direction,
    image_score,
    weak_map,
    boxes,
    seed=0,
    copies=2,
    shifted="auto",
    enlarged=False,
    blur=0.0,
    image_scores=IMAGE_SCORE_CHOICES,
    score_fade=1.0,
    directions=DIRECTION_CANDIDATES["one_sided"],
    direction_fade=1.0,
) -> tuple[dict[str, dict[str, Any] | None], list[np.ndarray], list[np.ndarray]]:
    """:func:`decide_on_painted`'s decisions, and the painted set's maps as decided and masks (content only)."""
    if enlarged == "auto" and not model.cfg.reads_any_size:  # CAVGA-w, CAVGA-R*: z of the training size only
        enlarged = False
    given = boxes  # the held-out images' N content boxes (None: unpadded); below, the painted set's M

    def painted_set_of(fade: float) -> tuple:
        """The painted set of the held-out images at this strength: images, masks, labels, kinds, boxes, content."""
        return painted_set(images, given, seed, copies, fade)

    x, masks, labels, _, boxes, valid = painted_set_of(1.0)
    s = x.shape[-1]
    asked = (shifted is True, enlarged is True)  # the map as asked, before the auto ones are decided
    both_weak = model.cfg.weakly_supervised and weak_map == "auto"  # score A_ca and 1 - A_cn
    first = "normal" if weak_map == "normal" else "anomalous"
    maps, normal_maps, paper, bce = [], [], [], []
    for i in range(0, len(x), batch_size):
        xb = x[i : i + batch_size].to(device)  # (B, 3, S, S)
        vb = None if valid is None else valid[i : i + batch_size].to(device)  # (B, 1, S, S)
        amap, x_hat, p_anomalous = anomaly_evidence(model, xb, "inverse", first, *asked)  # (B, 1, h, w)
        maps.append(at_size(amap, s, blur, vb))  # (B, S, S)
        if both_weak:
            normal_maps.append(at_size(anomaly_evidence(model, xb, "inverse", "normal", *asked)[0], s, blur, vb))
        if image_score == "auto":
            _whole_image_scores(xb, vb, x_hat, p_anomalous, paper, bce)
    maps, masks = content_only(np.concatenate(maps), boxes), content_only(masks, boxes)
    protocol = protocol_text(len(images), copies, seed)
    out: dict[str, dict[str, Any] | None] = {
        "attention_direction": None,
        "image_score": None,
        "weak_map": None,
        "shifted_map": None,
        "enlarged_map": None,
    }
    if both_weak:
        normal_maps = content_only(np.concatenate(normal_maps), boxes)
        by_map = {"anomalous": round(pixel_auroc(maps, masks), 4), "normal": round(pixel_auroc(normal_maps, masks), 4)}
        chosen = "normal" if by_map["normal"] > by_map["anomalous"] else "anomalous"
        out["weak_map"] = {"weak_map": chosen, "validation_pixel_auroc": by_map, "protocol": protocol}
        maps = normal_maps if chosen == "normal" else maps

    def painted_maps(way: str, weak: str, shift: bool, enlarge: bool, on=None) -> list[np.ndarray]:
        """The painted set's maps read so (:func:`anomaly_evidence`'s settings), content only; one batch on
        the device at a time. Two-sided, each against the level of the other clean held-out images.
        ``on``: another painted set of the same held-out images (its images, boxes, content maps)."""
        xs, bs, vs = on or (x, boxes, valid)
        if way == "two_sided":
            departures = held_out_departures(model, xs, len(images), batch_size, device, shift, enlarge, vs)
            return content_only(at_size(departures, s, blur, vs), bs)
        read = []
        for i in range(0, len(xs), batch_size):
            part = None if vs is None else vs[i : i + batch_size]  # (B, 1, S, S)
            amap = anomaly_evidence(model, xs[i : i + batch_size].to(device), way, weak, shift, enlarge)[0]
            read.append(at_size(amap, s, blur, part))  # (B, S, S)
        return content_only(np.concatenate(read), bs)

    if model.cfg.has_attention_direction and direction == "auto":
        args = (painted_maps, maps, masks, asked, directions, direction_fade, painted_set_of)
        direction, by_map, maps = _direction_choice(*args)  # maps: the chosen way's, at full strength
        out["attention_direction"] = {
            "attention_direction": direction,
            "validation_pixel_auroc": by_map[direction],
            "validation_pixel_auroc_by_direction": by_map,
            "candidates": list(directions),
            "protocol": protocol_text(len(images), copies, seed, direction_fade),
        }
    elif model.cfg.has_attention_direction and direction in ("direct", "two_sided"):  # asked for
        maps = painted_maps(direction, "anomalous", *asked)
    decided = (  # the direction and CAVGA-w map as decided
        direction if direction in ("direct", "two_sided") else "inverse",
        out["weak_map"]["weak_map"] if out["weak_map"] else first,
    )
    if shifted == "auto":  # averaged over half-cell shifts (half_cell_average)
        moved = painted_maps(*decided, True, enlarged is True)
        out["shifted_map"], maps = _kept_if_better("shifted_map", "shift", maps, moved, masks, protocol)
        shifted = out["shifted_map"]["shifted_map"]
    if enlarged == "auto":  # averaged with the enlarged image's (enlarged_average)
        grown = painted_maps(*decided, shifted is True, True)
        out["enlarged_map"], maps = _kept_if_better("enlarged_map", "enlargement", maps, grown, masks, protocol)
    if image_score == "auto":
        by_score = _image_aurocs(np.concatenate(paper), [m.max() for m in maps], np.concatenate(bce), labels)
        chosen_on = {"validation_image_auroc": by_score, "protocol": protocol}
        if score_fade < 1.0:  # infer.score_fade: ranked on faded paint, the map read as decided
            enlarge = out["enlarged_map"]["enlarged_map"] if out["enlarged_map"] else enlarged is True
            read = (*decided, shifted is True, enlarge)
            faded = _faded_image_aurocs(model, images, given, seed, copies, score_fade, batch_size, device, read, blur)
            chosen_on = {"validation_image_auroc": faded, "full_strength_image_auroc": by_score}
            chosen_on["protocol"] = protocol_text(len(images), copies, seed, score_fade)
        out["image_score"] = {
            "image_score": choose_image_score(chosen_on["validation_image_auroc"], image_scores),
            "candidates": list(image_scores),
        } | chosen_on
    return out, maps, masks


def _direction_choice(painted_maps, inverse, masks, asked, directions, fade, painted_set_of) -> tuple:
    """``infer.attention_direction: auto``: each candidate way's painted pixel AUROC (on the defects
    faded to U(``fade``, 1) where ``fade`` < 1: a second painted set of the same images, the same
    defects), the way with the highest (ties keep the earlier: the paper's 1 - A first), and its maps
    on the full-strength set (``inverse``: 1 - A's there, already read)."""
    read = {"inverse": inverse}
    if fade >= 1.0:
        read |= {way: painted_maps(way, "anomalous", *asked) for way in directions if way != "inverse"}
        by_way = {way: round(pixel_auroc(read[way], masks), 4) for way in directions}
    else:
        x, faded_masks, _, _, boxes, valid = painted_set_of(fade)
        faded_masks = content_only(faded_masks, boxes)
        on = (x, boxes, valid)
        by_way = {
            way: round(pixel_auroc(painted_maps(way, "anomalous", *asked, on), faded_masks), 4) for way in directions
        }
    chosen = max(by_way, key=by_way.get)
    return chosen, by_way, read[chosen] if chosen in read else painted_maps(chosen, "anomalous", *asked)


def _image_aurocs(paper: np.ndarray, peaks: list, bce: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """The image score candidates' image AUROCs on a painted set: the paper's score, the map's peak, the BCE."""
    return {
        "paper": round(image_auroc(paper, labels), 4),
        "map": round(image_auroc(np.asarray(peaks), labels), 4),
        "bce": round(image_auroc(bce, labels), 4),
    }


def _whole_image_scores(x, valid, x_hat, p_anomalous, paper: list, bce: list) -> None:
    """Append a batch's paper score (C's probability for CAVGA-w, the reconstruction score for
    CAVGA-u) and reconstruction BCE, each (B,), to ``paper`` and ``bce``."""
    score = p_anomalous if p_anomalous is not None else reconstruction_score(x, x_hat, valid)[1]  # (B,)
    paper.append(score.cpu().numpy())
    bce.append(bce_score(x, x_hat, valid).cpu().numpy())  # (B,)


def _faded_image_aurocs(model, images, boxes, seed, copies, fade, batch_size, device, read, blur) -> dict[str, float]:
    """:func:`_image_aurocs` on the painted set's defects faded to U(``fade``, 1), the map read as
    ``read`` (:func:`anomaly_evidence`'s direction, weak map, shift, enlargement)."""
    x, _, labels, _, boxes, valid = painted_set(images, boxes, seed, copies, fade)  # (M, 3, S, S)
    two_sided = read[0] == "two_sided"  # each image against the other clean images' level
    departures = held_out_departures(model, x, len(images), batch_size, device, *read[2:], valid) if two_sided else None
    paper, peaks, bce = [], [], []
    for i in range(0, len(x), batch_size):
        xb = x[i : i + batch_size].to(device)  # (B, 3, S, S)
        vb = None if valid is None else valid[i : i + batch_size].to(device)  # (B, 1, S, S)
        way = ("inverse", *read[1:]) if two_sided else read  # the reconstruction and C do not depend on it
        amap, x_hat, p_anomalous = anomaly_evidence(model, xb, *way)  # (B, 1, h, w)
        amap = departures[i : i + batch_size] if two_sided else amap
        _whole_image_scores(xb, vb, x_hat, p_anomalous, paper, bce)
        maps = content_only(at_size(amap, x.shape[-1], blur, vb), boxes[i : i + batch_size])
        peaks += [m.max() for m in maps]
    return _image_aurocs(np.concatenate(paper), peaks, np.concatenate(bce), labels)


def choose_image_score(by_score: dict[str, float], candidates: tuple[str, ...] = IMAGE_SCORE_CHOICES) -> str:
    """The candidate with the highest painted image AUROC in ``by_score``; ties keep the earlier in
    ``by_score``'s order (the paper's first)."""
    allowed = {k: v for k, v in by_score.items() if k in candidates}
    if not allowed:
        raise ValueError(f"none of the image scores {list(by_score)} is a candidate ({', '.join(candidates)})")
    return max(allowed, key=allowed.get)


def _kept_if_better(setting: str, by: str, maps: list, other: list, masks: list, protocol: str) -> tuple[dict, list]:
    """A map option switched on (``other``) where its painted pixel AUROC is above the map's as it
    is (``maps``): the decision for the checkpoint, and the maps kept."""
    by_value = {"off": round(pixel_auroc(maps, masks), 4), "on": round(pixel_auroc(other, masks), 4)}
    on = by_value["on"] > by_value["off"]
    return {setting: on, f"validation_pixel_auroc_by_{by}": by_value, "protocol": protocol}, other if on else maps
