"""`cavga report RUN_DIR`: one self-contained HTML page of an evaluated run (``RUN_DIR/report/index.html``).

Everything comes from files ``evaluate`` wrote (metrics.json, scores.json, maps/) and the test images
themselves; the model is never run again.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..errors import CavgaError
from ..io_utils import atomic_write_text, read_json, refuse_linked_folders
from ..metrics import UndefinedMetricError, image_auroc
from ..runfolder import stored_check
from ..runlock import locked
from . import plots
from .gallery import mask_rule, write_panels
from .render import page_link, render_page
from .scores import FieldCheck, load_map16, load_scores

REPORT_DIR = "report"
BUILDING, REPLACED = ".report.new", ".report.old"  # beside REPORT_DIR while a new report is swapped in
IMG_DIR = "img"
WRITTEN = ".written.json"  # inside REPORT_DIR: the files its build wrote; a rebuild keeps every other file
GALLERY_LIMIT = 400  # test images shown in the gallery, worst first
PANELS = (("input", "input"), ("overlay", "heatmap overlay"), ("pred", "predicted mask"), ("true", "true mask"))
SORTS = (
    ("error", "error (worst first)"),
    ("score", "score (highest first)"),
    ("defect", "defect type"),
    ("name", "name"),
)

# The paper's definitions (Sec. 4, "Training and evaluation"), and MVTec AD's for the metrics it added.
DEFINITIONS = {
    "image_auroc": "Area under the ROC curve of the image scores against the image labels (detection). "
    "It ranks the raw score, so no threshold is involved.",
    "pixel_auroc": "Area under the ROC curve of all test pixels pooled (the paper's AuROC for localisation, after "
    "Bergmann et al. [5]); each map is upsampled to its image's own size.",
    "iou": "The paper's IoU: |P ∩ G| / |P ∪ G| between the predicted mask P (the anomaly map at the mask threshold) "
    "and the ground truth G, per anomalous image, averaged over those images.",
    "detection_accuracy": "The paper's detection measure: the mean of the accuracy on anomalous test images and the "
    "accuracy on normal ones, using the verdicts (normalised score against the verdict threshold).",
    "aupro": "Area under the per-region-overlap curve up to 30% pixel false-positive rate, divided by 0.3 "
    "(MVTec AD, Bergmann et al. 2021): each connected defect region counts equally, whatever its size.",
    "f1_max": "The best pixel F1 score over all thresholds of the anomaly map.",
    "iou_gated": "IoU as above, with the mask of every image whose verdict is normal emptied first: the masks "
    "the answers carry when only anomalous verdicts show a defect region (infer.mask_gate: verdict).",
    "normal_flagged": "The share of normal test images whose predicted mask flags any pixel (IoU cannot see them).",
    "normal_flagged_gated": "The same share, with masks shown only where the verdict is anomalous.",
}
NAMES = {
    "image_auroc": "image AUROC",
    "pixel_auroc": "pixel AUROC",
    "iou": "IoU",
    "detection_accuracy": "detection accuracy",
    "aupro": "AUPRO (FPR ≤ 0.3)",
    "f1_max": "pixel F1 max",
    "iou_gated": "IoU, masks only on anomalous verdicts",
    "normal_flagged": "normal images with a mask",
    "normal_flagged_gated": "normal images with a mask, gated",
}


def _load_metrics(run_dir: Path) -> dict[str, Any]:
    """``RUN_DIR/metrics.json``, refused in one line where a field the page shows is not as evaluate wrote it."""
    path = run_dir / "metrics.json"
    data = read_json(path, f"run `cavga evaluate {run_dir}` first", "metrics file")
    c = FieldCheck(path, run_dir)
    c.need(isinstance(data, dict), "the file", "a mapping", data)
    m = c.mapping(data, "metrics")
    for key in NAMES:
        c.number(m.get(key), f"metrics.{key}", optional=True)
    c.need(isinstance(m.get("undefined"), (list, type(None))), "metrics.undefined", "a list", m.get("undefined"))
    for key in ("baseline_residual", "per_defect_iou", "split"):
        c.mapping(data, key, optional=True)
    return data


def error_of(score: float, label: int, threshold: float) -> float:
    """How far a score sits on the wrong side of the verdict threshold (negative: on the right side)."""
    return threshold - score if label == 1 else score - threshold


def _kind(label: int, verdict: int) -> tuple[str, str]:
    kind = {(1, 1): "TP", (0, 0): "TN", (1, 0): "FN", (0, 1): "FP"}[(label, verdict)]
    text = {"TP": "caught", "TN": "passed", "FN": "missed (FN)", "FP": "false alarm (FP)"}[kind]
    return kind, text


def _name(path: str) -> str:
    p = Path(path)
    return f"{p.parent.name}/{p.name}"


def _defect_rows(images: list[dict[str, Any]], per_defect_iou: dict[str, float]) -> list[dict[str, Any]]:
    normal_scores = [im["raw_score"] for im in images if im["label"] == 0]
    rows = []
    for d in sorted({im["defect"] for im in images}, key=lambda d: (d != "good", d)):
        sel = [im for im in images if im["defect"] == d]
        auroc = None
        if d != "good" and all(im["label"] == 1 for im in sel) and normal_scores:
            s = [im["raw_score"] for im in sel]
            try:
                auroc = image_auroc(np.array(normal_scores + s), np.array([0] * len(normal_scores) + [1] * len(s)))
            except UndefinedMetricError:
                auroc = None
        rows.append(
            {
                "defect": d,
                "n": len(sel),
                "flagged": float(np.mean([im["verdict"] for im in sel])),
                "mean_score": float(np.mean([im["score"] for im in sel])),
                "auroc": auroc,
                "iou": per_defect_iou.get(d),
            }
        )
    return rows


def _short(v: Any) -> str:
    """A split value for the table: long lists are counted, mappings listed one level deep."""
    if isinstance(v, list):
        return ", ".join(map(str, v)) if len(v) <= 8 else f"{len(v)} items"
    if isinstance(v, dict):
        return "; ".join(f"{k}: {_short(x)}" for k, x in v.items())
    return str(v)


def _split_rows(split: dict[str, Any], seed: Any) -> list[tuple[str, str]]:
    rows = [(k, _short(v)) for k, v in split.items()]
    return rows if "seed" in split else [*rows, ("seed", str(seed))]


@locked("report")
def write_run_report(run_dir: str | Path) -> Path:
    """Write ``RUN_DIR/report/index.html`` (holding the run's lock); return its path."""
    return build_run_report(run_dir)


def build_run_report(run_dir: str | Path) -> Path:
    """Write ``RUN_DIR/report/index.html`` with its figures and thumbnails beside it; return its path.
    The caller holds the run's lock (``evaluate`` does). The new report is built in a sibling folder
    and swapped in only once complete: a failure leaves the earlier report as it was."""
    run_dir = Path(run_dir)
    out, new, old = run_dir / REPORT_DIR, run_dir / BUILDING, run_dir / REPLACED
    refuse_linked_folders(report_folders(run_dir), "report")
    # leftovers of a build killed midway (the lock keeps out any other): one killed between the swap's
    # two renames left the earlier report only as REPLACED, which goes back in place
    if old.is_dir() and not old.is_symlink():
        if out.exists() or out.is_symlink():
            shutil.rmtree(old)
        else:
            old.rename(out)
    if new.is_dir() and not new.is_symlink():
        shutil.rmtree(new)
    try:
        _write_report(run_dir, new)
        atomic_write_text(new / WRITTEN, json.dumps(sorted(_files_under(new))))
        if out.is_dir() and not out.is_symlink():
            _copy_users_files(out, new)
    except BaseException:
        shutil.rmtree(new, ignore_errors=True)
        raise
    if out.exists():
        out.rename(old)
    new.rename(out)  # the moment without a report/ is two renames long
    shutil.rmtree(old, ignore_errors=True)
    return out / "index.html"


def report_folders(run_dir: Path) -> list[Path]:
    """The folders a report build writes, or moves and removes: ``report/`` and its two stand-ins."""
    return [run_dir / REPORT_DIR, run_dir / BUILDING, run_dir / REPLACED]


def _files_under(folder: Path) -> set[str]:
    """Every file and link under ``folder``, as paths relative to it ("img/0001_input.png")."""
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_symlink() or not p.is_dir()}


def _built_files(report: Path) -> set[str]:
    """The files of the report folder ``report`` that its build wrote: those its list names, or, for a
    report built before that list (session 71), its page, its figures and its thumbnail folder."""
    try:
        return set(json.loads((report / WRITTEN).read_text(encoding="utf-8"))) | {WRITTEN}
    except (OSError, ValueError, TypeError):
        files = _files_under(report)
        return {p for p in files if p == "index.html" or p.endswith(".svg") or p.startswith(IMG_DIR + "/")}


def remove_run_report(run_dir: str | Path) -> None:
    """Remove a run's report (stale once its decisions change), keeping any file of the user's in it."""
    report = Path(run_dir) / REPORT_DIR
    if not report.is_dir() or report.is_symlink():
        return
    built = _built_files(report)
    if not _files_under(report) - built:
        shutil.rmtree(report)
        return
    for name in built:
        (report / name).unlink(missing_ok=True)
    for folder in sorted((d for d in report.rglob("*") if d.is_dir()), key=lambda d: -len(d.parts)):
        if not any(folder.iterdir()):  # emptied above (a folder with a file of the user's stays)
            folder.rmdir()


def _copy_users_files(old: Path, new: Path) -> None:
    """Copy into the new report every file of the old one that no build wrote: notes or pictures a user
    put there survive a rebuild (copied, so that the old report stays whole until the swap). The old
    build's list says which files were its own; a report built before that list (session 71) counts
    its page, figures and thumbnail folder as its own."""
    for name in sorted(_files_under(old) - _built_files(old)):
        target = new / name
        if target.exists() or target.is_symlink():  # the new build writes a file of that name: keep both
            target = target.with_name(f"{target.stem}.yours{target.suffix}")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(old / name, target, follow_symlinks=False)


def gated_iou(im: dict[str, Any], gated: bool) -> tuple[float | None, float | None]:
    """(IoU of the predicted-mask panel, the ungated IoU where the gate emptied that mask) of a
    scores.json image: the gate (``infer.mask_gate: verdict``) empties a normal verdict's mask, whose
    IoU is then 0, as metrics.json's ``iou_gated`` counts it; ``iou`` is the ungated one."""
    if im["iou"] is None or not gated or im["verdict"]:
        return im["iou"], None
    return 0.0, im["iou"]


def _card(im: dict[str, Any], run_dir: Path, out: Path, thr: dict[str, Any]) -> dict[str, Any]:
    """One gallery card: its thumbnails written into ``out/img``, or, for an image, mask or map that
    is gone or cannot be read, the reason instead of them (a map that is no map evaluate wrote is
    refused, :func:`_map`)."""
    gated = thr.get("mask_gate") == "verdict"  # evaluated before it existed: every mask shown
    amap = _map(run_dir, im["map"])
    try:
        if amap is None:
            raise CavgaError(f"{run_dir / im['map']}: anomaly map not found")
        stem = f"{im['index']:04d}"
        panels = write_panels(im["path"], amap, thr, im["mask_path"], im["label"], im["verdict"], out / IMG_DIR, stem)
        missing = None
    except CavgaError as e:  # a test image (or map) moved or deleted since evaluate: a placeholder card
        panels, missing = {k: None for k, _ in PANELS}, str(e)
    kind, kind_text = _kind(im["label"], im["verdict"])
    iou, ungated = gated_iou(im, gated)
    return {
        **im,
        "name": _name(im["path"]),
        "kind": kind,
        "kind_text": kind_text,
        "verdict": "anomalous" if im["verdict"] else "normal",
        "error": round(error_of(im["score"], im["label"], float(thr["score"])), 6),
        "iou": iou,
        "iou_ungated": ungated,
        "gate_emptied": gated and not im["verdict"],
        "missing": missing,
        "panels": {k: page_link(f"{IMG_DIR}/{v}") if v else None for k, v in panels.items()},
    }


def _map(run_dir: Path, name: str) -> np.ndarray | None:
    """The stored map ``name`` (maps/NNNN.png) (h, w); None where it is gone (a placeholder card); one
    that is no map evaluate wrote is refused."""
    path = run_dir / name
    if not path.exists():
        return None
    try:
        return load_map16(path)  # (h, w)
    except CavgaError as e:
        raise CavgaError(f"{e}; run `cavga evaluate {run_dir}` again") from None


def _write_report(run_dir: Path, out: Path) -> Path:
    """Write the report of ``run_dir`` into the folder ``out``: index.html, its figures and thumbnails."""
    metrics, scores = _load_metrics(run_dir), load_scores(run_dir)
    thr = scores["thresholds"]
    t_score, t_mask = float(thr["score"]), float(thr["mask"])
    peak_fraction = float(thr.get("mask_peak_fraction") or 0.0)  # evaluated before it existed: 0
    min_area = float(thr.get("mask_min_area") or 0.0)
    gated = thr.get("mask_gate") == "verdict"  # evaluated before it existed: every mask shown
    images = scores["images"]

    # the worst misses and false alarms first; a large test set (the one-class protocol's 10000
    # images) shows its GALLERY_LIMIT worst, the page says how many it left out
    ranked = sorted(images, key=lambda im: -error_of(im["score"], im["label"], t_score))
    gallery = [_card(im, run_dir, out, thr) for im in ranked[:GALLERY_LIMIT]]

    weak = scores["score_kind"] == "probability"
    t_raw = thr.get("raw_score")
    raw = {lab: [im["raw_score"] for im in images if im["label"] == lab] for lab in (0, 1)}
    xlabel = {
        "probability": "classifier probability of 'anomalous'",
        "map_peak": "raw score (peak of the anomaly map)",
        "reconstruction_bce": "raw score (mean reconstruction BCE, Eq. 1)",
    }.get(scores["score_kind"], "raw score (mean reconstruction difference)")
    fig = plots.score_histogram(raw[0], raw[1], scores["held_out_raw_scores"], t_raw, xlabel)
    figures = {"histogram": "histogram.svg", "roc": None, "pro": None}
    plots.write_svg(fig, out / figures["histogram"])
    m = metrics["metrics"]
    if scores.get("roc"):
        plots.write_svg(
            plots.roc_figure(scores["roc"]["fpr"], scores["roc"]["tpr"], m.get("image_auroc")), out / "roc.svg"
        )
        figures["roc"] = "roc.svg"
    pro = scores.get("pro")
    if pro:
        plots.write_svg(plots.pro_figure(pro["fpr"], pro["pro"], pro["fpr_limit"], m.get("aupro")), out / "pro.svg")
        figures["pro"] = "pro.svg"

    # how hi was read off the held-out scores; a run evaluated before infer.normalizer_rank existed read
    # numpy's interpolated quantile
    how = "conformal-rank" if thr.get("normalizer_rank") == "conformal" else "interpolated"
    if weak and not scores.get("calibrated"):
        note = "The verdict thresholds the weakly supervised classifier's probability; no threshold is fitted."
        definition = f"An image is anomalous when the classifier's probability is at least {t_score:g}."
    else:
        n = len(scores["held_out_raw_scores"])
        q = thr.get("normalizer_quantile")
        note = (
            f"Test image scores (filled) and the {n} held-out normal images' scores (outline) the threshold was "
            f"fitted on: normalised score {t_score:g} is drawn at raw score {t_raw:.4g}."
        )
        definition = (
            f"Raw scores are normalised on {n} held-out normal images: s = clip((raw - lo) / (2 (hi - lo)), 0, 1), "
            f"lo their lowest score, hi their {q} quantile ({how}); an image is anomalous when s ≥ {t_score:g}."
        )
    split = metrics.get("split") or {}
    counts = _split_rows(split, metrics.get("seed"))
    thresholds = [("verdict threshold (normalised score)", f"{t_score:g}")]
    if not weak or scores.get("calibrated"):
        thresholds += [
            ("verdict threshold (raw score)", f"{t_raw:.6g}"),
            ("normaliser quantile", f"{thr.get('normalizer_quantile')} ({how})"),
        ]
    thresholds += [("mask threshold (anomaly map)", f"{t_mask:.6g}"), ("mask quantile", thr.get("mask_quantile"))]
    if thr.get("mask_margin"):  # raised above the quantile (infer.mask_margin)
        thresholds.append(("mask margin", thr["mask_margin"]))
    if peak_fraction:  # raised towards each map's own peak (infer.mask_peak_fraction)
        thresholds.append(("mask peak fraction", peak_fraction))
    if min_area:  # smaller regions dropped (infer.mask_min_area)
        thresholds.append(("mask min area (share of the image)", min_area))
    if gated:  # infer.mask_gate
        thresholds.append(("masks shown", "only where the verdict is anomalous"))

    checked = stored_check(run_dir) or {}  # the painted-defect check `cavga train` ended with
    metric_rows = [
        {"key": k, "name": NAMES[k], "definition": DEFINITIONS[k], "value": m.get(k),
         "baseline": (metrics.get("baseline_residual") or {}).get(k), "painted": checked.get("metrics", {}).get(k)}
        for k in NAMES
    ]  # fmt: skip
    return render_page(
        "run.html.j2",
        out / "index.html",
        model=metrics.get("model", "cavga"),
        dataset=split.get("category") or split.get("layout") or "its data set",
        run=str(run_dir),
        image_size=metrics.get("image_size"),
        seed=metrics.get("seed"),
        version=__version__,
        metrics=metric_rows,
        painted_protocol=checked.get("protocol"),
        undefined=m.get("undefined") or [],
        split=counts,
        thresholds=thresholds,
        threshold_raw=t_raw,
        threshold_definition=definition,
        histogram_note=note,
        figures=figures,
        pro_limit=pro["fpr_limit"] if pro else 0.3,
        pro_limit_pct=round(100 * (pro["fpr_limit"] if pro else 0.3)),
        defects=_defect_rows(images, metrics.get("per_defect_iou") or {}),
        images=gallery,
        n_wrong=sum(im["verdict"] != im["label"] for im in images),
        n_images=len(images),
        panels=PANELS,
        sorts=SORTS,
        legend=mask_rule(t_mask, peak_fraction, min_area, gated),
        n_missing=sum(g["missing"] is not None for g in gallery),
        data={"metrics": {k: m.get(k) for k in NAMES}, "thresholds": thr, "n_images": len(images)},
    )
