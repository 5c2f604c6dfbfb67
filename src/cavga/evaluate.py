"""The paper's evaluation of a trained run on its test split (Sec. 4, "Training and evaluation").

Every image is scored at its ground truth's own size: the maps are upsampled (bilinear) to the
mask, never the mask shrunk, so no defect vanishes. Image AUROC ranks the raw score (the
reconstruction difference, or C's probability); the verdicts behind detection accuracy threshold
the normalised score.

Beside CAVGA's own numbers it measures, from the same forward pass, the trivial baseline the
attention has to beat: the per-pixel reconstruction difference |x - x_hat| as the anomaly map and
its mean as the image score (the AE-style localisation of [6, 48]).  Its mask threshold is decided
as the map's, on painted defects on held-out normal images (:func:`cavga.mask_threshold.decide_residual_mask`;
half the highest held-out residual in runs from before session 58), so neither looks at test labels.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from . import data as D
from .data import Record, image_size_of, load_mask
from .errors import CavgaError
from .held_out import eval_loader
from .image_scores import final_mask, native_map, peak_mask
from .inference import Predictor
from .io_utils import atomic_write_json, refuse_linked_folders, remove_stale_temp_files
from .map_choice import map_settings
from .metrics import compute_metrics, iou
from .report.scores import (
    MAPS_DIR,
    SCORES_FILE,
    curves,
    mark_maps,
    new_evaluation,
    raw_threshold,
    save_map16,
    write_scores,
)
from .runfolder import RunData
from .runlock import locked

METRICS_FILE = "metrics.json"
OVERLAYS_DIR = "overlays"  # comparison strips of a few test images
METRIC_KEYS = ("image_auroc", "pixel_auroc", "iou", "detection_accuracy", "aupro", "f1_max")
# beside them in the painted check and the report: the masks as the answers carry them (infer.mask_gate)
GATE_KEYS = ("iou_gated", "normal_flagged", "normal_flagged_gated")


@locked("evaluate")
def evaluate_run(
    run_dir: str | Path,
    device: str = "auto",
    progress: bool = True,
    overlays: int = 8,
    infer: list[str] | None = None,
    report: bool = True,
) -> dict[str, Any]:
    """Predict the run's test split, write ``metrics.json``, ``scores.json`` (and ``maps/``), a few
    overlays and, with ``report``, the HTML page ``report/index.html``; return the result.

    ``infer``: ``infer.*`` overrides (thresholds, normaliser quantile) for this evaluation only."""
    run_dir = Path(run_dir)
    _prepare_folders(run_dir, report)
    predictor = Predictor.from_run(run_dir, device, infer)
    cfg = predictor.cfg
    run_data = RunData.load(run_dir)
    if not run_data.test:
        raise CavgaError(f"{run_dir / 'split.json'}: the test split is empty; there is nothing to evaluate")
    peak = predictor.normalizer.residual_peak if predictor.normalizer else None

    cols: dict[str, list] = {
        k: []
        for k in ("score", "label", "pred", "map", "mask", "has_mask", "pmask", "raw", "res", "defect", "path", "norm")
    }
    show = set(_overlay_picks(run_data.test, overlays))
    records = iter(run_data.test)
    evaluation = new_evaluation()  # in maps/ before the first map, in scores.json last: a report of a
    mark_maps(run_dir, evaluation)  # stopped evaluation's maps under the earlier scores is refused
    for batch in tqdm(eval_loader(run_data.test, cfg), desc="evaluate", disable=not progress):
        pred = predictor.predict_batch(batch.image, batch.valid)
        residual = pred.residual_map  # (B, S, S)
        cols["score"].append(pred.raw_score)  # image AUROC ranks the raw score: no ties from clipping
        cols["label"].append(batch.label)
        cols["pred"].append(pred.label)  # the verdict: the normalised score against its threshold
        cols["norm"].append(pred.score)
        for i in range(len(batch)):
            record = next(records)
            if record.image_path != batch.path[i]:
                raise RuntimeError(f"evaluation order broke: {record.image_path} vs {batch.path[i]}")
            gt, real = native_mask(record)  # (H, W) bool at the image's own size
            amap = native_map(pred.anomaly_map[i], gt.shape, cfg.data.resize)  # (H, W)
            cols["map"].append(amap)
            p = predictor  # the ungated mask: the metrics gate it themselves (iou_gated)
            cols["pmask"].append(final_mask(amap, 1, p.mask_threshold, p.mask_peak_fraction, p.mask_min_area))
            cols["mask"].append(gt)
            cols["has_mask"].append(real)
            cols["res"].append(native_map(residual[i], gt.shape, cfg.data.resize))  # (H, W)
            content = D.crop(pred.anomaly_map[i], D.content_box(gt.shape, cfg.data.image_size, cfg.data.resize))
            save_map16(content.numpy(), run_dir / MAPS_DIR / f"{len(cols['map']) - 1:04d}.png")  # (h, w)
        cols["raw"].append(pred.residual_score)  # the residual's raw image score (of the unblurred residual)
        cols["defect"] += batch.defect_type
        cols["path"] += batch.path
        if show & set(batch.path):
            _save_overlays(run_dir / OVERLAYS_DIR, batch, pred, show, cfg)

    labels, pred_labels = torch.cat(cols["label"]).numpy(), torch.cat(cols["pred"]).numpy()
    maps, masks, has_mask, pred_masks = cols["map"], cols["mask"], np.array(cols["has_mask"]), cols["pmask"]
    cavga = compute_metrics(
        scores=torch.cat(cols["score"]).numpy(),
        labels=labels,
        pred_labels=pred_labels,
        anomaly_maps=maps,
        masks=masks,
        pred_masks=pred_masks,
        has_mask=has_mask,
    )
    residual_maps = cols["res"]  # N x (H_i, W_i)
    recon = torch.cat(cols["raw"])
    if peak:
        for r in residual_maps:
            r /= peak  # (H, W), in place (bottle's 900x900 maps add up); unclipped: residual_baseline
    baseline = residual_baseline(
        predictor, recon.numpy(), labels, residual_maps, masks, has_mask, *predictor.residual_level
    )
    pixel_truth = bool(has_mask[labels == 1].any()) if labels.any() else bool(has_mask.any())
    result = {
        "run": str(run_dir),
        "model": cfg.model.label,
        "image_size": cfg.data.image_size,
        "image_auroc": _clean(cavga)["image_auroc"],  # the one-class protocol's metric (Table 7)
        # False: no anomalous test image has a pixel mask (e.g. the one-class layouts); pixel metrics are absent
        "pixel_ground_truth": pixel_truth,
        "metrics": _clean(cavga),
        # None where the model reconstructs nothing (PatchCore): there is no residual to measure
        "baseline_residual": _clean(baseline) if predictor.has_reconstruction else None,
        "per_defect_iou": _per_defect_iou(pred_masks, masks, has_mask, labels, cols["defect"]),
        "split": run_data.info,
        # the normal test images and how many the verdict flags: the false alarms, defined without anomalies
        "normal_verdicts": {"n": int((labels == 0).sum()), "flagged": int(pred_labels[labels == 0].sum())},
        "scoring": {"pixel": "each image's own size (maps upsampled bilinearly)", "image_auroc": "raw score"},
        "seed": cfg.data.seed,
        # the inference settings asked for (the run's, with this evaluation's --set; autos as "auto"): a grid
        # adopts a folder evaluated outside it only under its own settings (cavga.grid.run)
        "infer": predictor.requested_infer,
        "thresholds": {
            "mask": predictor.mask_threshold,
            "mask_quantile": cfg.infer.mask_quantile,
            "mask_margin": cfg.infer.mask_margin,
            "mask_peak_fraction": predictor.mask_peak_fraction,
            "mask_min_area": predictor.mask_min_area,
            "mask_gate": cfg.infer.mask_gate,  # the answers' masks; metrics hold IoU with and without it
            # the same-run residual's mask: its threshold (of the residual over its held-out peak) and
            # peak fraction, decided on painted defects as the map's (0.5, 0 in runs from before)
            "residual_mask": list(predictor.residual_level),
            "score": cfg.infer.score_threshold,
            "normalizer_quantile": cfg.infer.normalizer_quantile,
            "normalizer_rank": cfg.infer.normalizer_rank,  # how that quantile was read off the held-out scores
        },
        **map_settings(cfg),  # the map and image score in use, as training's end resolved them
        "normalizer": _summary(predictor.normalizer),
        # CAVGA-w's calibrated verdict (infer.classifier_verdict): its fit on held-out C probabilities
        "classifier_calibration": _summary(predictor.classifier_normalizer) if cfg.model.weakly_supervised else None,
        # what normalised the image score the verdict thresholds (any of the above, or the map peaks')
        "score_normalizer": _summary(predictor.score_normalizer),
    }
    atomic_write_json(run_dir / METRICS_FILE, result)
    _write_scores(run_dir, run_data, cols, result, predictor, evaluation)
    if report:
        from .report.run_report import build_run_report

        build_run_report(run_dir)  # under this evaluation's lock
    return result


def _prepare_folders(run_dir: Path, report: bool) -> None:
    """Before any write: refuse output folders that are symbolic links (maps/, overlays/ and, with
    ``report``, report/), then remove the temp files a killed evaluation left in them and beside
    metrics.json and scores.json (only those: another command's may be mid-write in the run folder)."""
    folders = [run_dir / MAPS_DIR, run_dir / OVERLAYS_DIR]
    if report:
        from .report.run_report import report_folders

        folders += report_folders(run_dir)
    refuse_linked_folders(folders, "evaluate")
    for folder in (MAPS_DIR, OVERLAYS_DIR):
        remove_stale_temp_files(run_dir / folder)
    own = re.compile("|".join(rf"\.{re.escape(name)}\.[0-9a-f]{{8}}\.tmp" for name in (METRICS_FILE, SCORES_FILE)))
    for p in run_dir.glob(".*.tmp"):
        if own.fullmatch(p.name) and p.is_file():
            p.unlink(missing_ok=True)


def _write_scores(
    run_dir: Path, run_data: RunData, cols: dict[str, list], result: dict[str, Any], predictor, evaluation: str
) -> None:
    """scores.json: what ``cavga report`` draws, so that it never runs the model again; ``evaluation``:
    the id this evaluation wrote into maps/ (:func:`cavga.report.scores.check_same_evaluation`)."""
    labels, raw = torch.cat(cols["label"]).numpy(), torch.cat(cols["score"]).numpy()
    norm, verdict = torch.cat(cols["norm"]).numpy(), torch.cat(cols["pred"]).numpy()
    real = [bool(h) or int(y) == 0 for h, y in zip(cols["has_mask"], labels, strict=True)]
    images = []
    for i, r in enumerate(run_data.test):
        p, g = cols["pmask"][i], cols["mask"][i]
        images.append(
            {
                "index": i,
                "path": r.image_path,
                "mask_path": r.mask_path,
                "label": int(labels[i]),
                "defect": r.defect_type,
                "raw_score": float(raw[i]),
                "score": float(norm[i]),
                "verdict": int(verdict[i]),
                "iou": float((p & g).sum() / max((p | g).sum(), 1)) if r.label == 1 and real[i] else None,
                "map": f"{MAPS_DIR}/{i:04d}.png",
            }
        )
    keep = [i for i, ok in enumerate(real) if ok]
    t = result["thresholds"]
    fitted = predictor.score_normalizer  # None: C's probability as is (infer.classifier_verdict=probability)
    write_scores(
        run_dir,
        {
            "model": result["model"],
            "evaluation": evaluation,
            "score_kind": score_kind(predictor.cfg),
            "calibrated": fitted is not None,  # the verdict threshold was fitted on held-out normal images
            "thresholds": {
                **t,
                "raw_score": raw_threshold(fitted.to_dict(), t["score"]) if fitted is not None else t["score"],
            },
            "held_out_raw_scores": [] if fitted is None else list(fitted.scores),
            "images": images,
            **curves(raw, labels, [cols["map"][i] for i in keep], [cols["mask"][i] for i in keep]),
        },
    )


def residual_baseline(
    predictor: Predictor,
    recon,
    labels,
    residual_maps,
    masks,
    has_mask=None,
    threshold: float = 0.5,
    fraction: float = 0.0,
) -> dict[str, Any]:
    """The residual baseline's metrics: the maps |x - x_hat| in units of the held-out peak, masked at
    ``threshold`` raised ``fraction`` towards each map's peak (:func:`peak_mask`; evaluate's rule: 0.5
    of the held-out peak, 0), their raw means ``recon`` (N,) as image scores and the run's own
    normaliser for the verdict. The masks read the maps clipped at 1, as the mask threshold was
    decided on them (:func:`cavga.mask_threshold.decide_residual_mask`); the threshold-free metrics
    read them unclipped, as the attention's direct map is (a clip would tie every pixel above the
    held-out peak; before session 73 they read the clipped maps)."""
    if predictor.normalizer:
        verdict = (predictor.normalizer(torch.as_tensor(recon)) >= predictor.cfg.infer.score_threshold).long().numpy()
    else:
        verdict = np.zeros_like(labels)
    return compute_metrics(
        scores=recon,
        labels=labels,
        pred_labels=verdict,
        anomaly_maps=residual_maps,
        masks=masks,
        pred_masks=[peak_mask(np.minimum(r, 1.0), threshold, fraction) for r in residual_maps],
        has_mask=has_mask,
    )


# per-image values, not summaries
LISTS = ("scores", "map_quantiles", "classifier_scores", "map_max", "map_min", "bce_scores")


def score_kind(cfg) -> str:
    """What an image's raw score is: "map_peak" (infer.image_score: map), "reconstruction_bce"
    (bce), C's "probability" (CAVGA-w) or the "reconstruction" difference (CAVGA-u)."""
    own = {"map": "map_peak", "bce": "reconstruction_bce"}.get(cfg.infer.image_score)
    return own or ("probability" if cfg.model.weakly_supervised else "reconstruction")


def _summary(normalizer) -> dict[str, Any] | None:
    """A normaliser without its stored score lists."""
    if normalizer is None:
        return None
    return {k: v for k, v in normalizer.to_dict().items() if k not in LISTS}


def _clean(metrics: dict[str, Any]) -> dict[str, Any]:
    """NaN is not JSON: undefined metrics become null (their names stay listed under "undefined")."""
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in metrics.items()}


def native_mask(record: Record) -> tuple[np.ndarray, bool]:
    """A test image's ground truth at its own (H, W), and whether it is real (normal, or has a mask)."""
    h, w = image_size_of(record.image_path)
    if record.label == 1 and record.mask_path is not None:
        mask = load_mask(record.mask_path, None, (h, w), record.image_path)  # (1, H, W)
        return mask[0].numpy() > 0.5, True
    return np.zeros((h, w), dtype=bool), record.label == 0


def _per_defect_iou(pred_masks, masks, has_mask, labels, defects) -> dict[str, float]:
    out = {}
    defects = np.asarray(defects)
    for d in sorted(set(defects[labels == 1])):
        sel = np.flatnonzero((defects == d) & has_mask & (labels == 1))
        if sel.size:
            picked = [pred_masks[i] for i in sel], [masks[i] for i in sel]
            out[str(d)] = round(float(iou(*picked, labels[sel])), 4)
    return out


def _overlay_picks(records, n: int) -> list[str]:
    """Up to ``n`` test images to draw: anomalous ones spread over the defect types, then two normal."""
    anomalous = [r for r in records if r.label == 1]
    by_type: dict[str, list[str]] = {}
    for r in anomalous:
        by_type.setdefault(r.defect_type, []).append(r.image_path)
    picks: list[str] = []
    while len(picks) < max(n - 2, 0) and any(by_type.values()):
        for paths in by_type.values():
            if paths and len(picks) < n - 2:
                picks.append(paths.pop(0))
    return picks + [r.image_path for r in records if r.label == 0][: n - len(picks)]


def _save_overlays(folder: Path, batch, pred, show: set[str], cfg) -> None:
    """Comparison strips of the picked images, each cropped to its content (``data.resize``: pad or
    center leave padding around it in the model's square)."""
    from .visualize import comparison_strip, save_png

    for i, path in enumerate(batch.path):
        if path not in show:
            continue
        box = D.content_box(image_size_of(path), cfg.data.image_size, cfg.data.resize)
        gt = D.crop(batch.mask[i, 0], box).numpy() > 0.5 if bool(batch.has_mask[i]) else None  # (h, w)
        verdict = "anomalous" if int(pred.label[i]) else "normal"
        caption = f"{Path(path).parent.name}/{Path(path).name}: score {float(pred.score[i]):.3f} "
        caption += f"(threshold {cfg.infer.score_threshold:g}) -> {verdict}"
        strip = comparison_strip(
            D.crop(batch.image[i], box),  # (3, h, w)
            D.crop(pred.reconstruction[i], box),  # (3, h, w)
            D.crop(pred.anomaly_map[i], box).numpy(),  # (h, w)
            D.crop(pred.mask[i], box).numpy(),  # (h, w)
            gt,
            caption=caption,
        )
        save_png(strip, folder / f"{batch.defect_type[i]}_{Path(path).stem}.png")


def format_table(results: list[dict[str, Any]], with_baseline: bool = True) -> str:
    """A markdown table: one row per run (and its residual baseline), one column per metric."""
    head = "| model | " + " | ".join(METRIC_KEYS) + " |"
    lines = [head, "|" + "---|" * (len(METRIC_KEYS) + 1)]

    def row(name: str, m: dict[str, Any]) -> str:
        return f"| {name} | " + " | ".join("n/a" if m.get(k) is None else f"{m[k]:.3f}" for k in METRIC_KEYS) + " |"

    for r in results:
        lines.append(row(r["model"], r["metrics"]))
        if with_baseline and r.get("baseline_residual"):
            lines.append(row("residual baseline", r["baseline_residual"]))
    return "\n".join(lines)


def normal_only_test_note(result: dict[str, Any]) -> str | None:
    """For an evaluation ``result`` (``cavga evaluate``) of a test split without anomalous images: the
    line that says so, as its detection and localisation metrics are then undefined, with the share of
    its normal images flagged anomalous (the false-alarm rate, defined without anomalies). None where
    the split holds an anomalous image, or for a painted-defect check's result."""
    counts = result.get("normal_verdicts")
    if not counts or not counts["n"] or (result.get("split") or {}).get("n_test_anomalous"):
        return None
    n, flagged = counts["n"], counts["flagged"]
    return (
        f"the test split has {n} normal and 0 anomalous images, so detection and localisation metrics are "
        f"undefined; {flagged} of the {n} normal images {'was' if flagged == 1 else 'were'} flagged anomalous "
        f"(false-alarm rate {flagged / n:.3f})"
    )
