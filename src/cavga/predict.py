"""`cavga predict`: verdict, heatmap overlay and mask for a user's images.

Each image's overlay, mask and raw anomaly map (at the image's own size: a 16-bit PNG, value / 65535
being the map in [0, 1], or float32 ``.npy`` with ``maps="npy"``) are written under a name that mirrors
the image's place below the input folder (``good/000.png`` -> ``good/000_overlay.png``), as soon as it
is scored, so memory stays flat in the number of images, and an unreadable image (a broken symbolic
link included) is reported and skipped rather than stopping the rest. A file named on the command
line is read whatever its extension (one that is no image is such an unreadable image). A folder is
walked as the data loaders list one: hidden files and folders are left out, and so are the masks in
the ``folder`` layout's mask folders (``ground_truth``, ``masks``), with a line saying how many.
Outputs never overwrite an input or any file that is not an earlier output of ``predict`` (those
listed in ``OUT/predictions.json``, or noted in ``OUT/.predict-outputs`` by a run that was killed
before it listed them), and earlier outputs are never read back as inputs.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import data as D
from .errors import CavgaError
from .image_scores import answer_mask, native_map
from .inference import Predictor
from .io_utils import (
    NAME_MAX,
    atomic_write,
    atomic_write_json,
    check_output_folder,
    cut_to_bytes,
    remove_stale_temp_files,
)
from .predict_outputs import (
    JOURNAL_FILE,
    PREDICTIONS_FILE,
    REPORT_PAGE,
    check_predictions_file,
    check_report_targets,
    earlier_outputs,
    note_outputs,
    remove_other_map,
    remove_stale_page,
    report_files,
    say_rows_dropped,
)
from .report.scores import MAP_SCALE, save_map16
from .runfolder import check_run_dir
from .runlock import LOCK_FILE, RunLock
from .runtime import resolve_device
from .visualize import heatmap_overlay, mask_image, save_png

# How the raw anomaly map of each image is written, and how to read it back (stored in predictions.json).
MAP_FORMATS = {
    "png16": f"<name>_map.png: 16-bit grey PNG at the image's own size; anomaly map = value / {MAP_SCALE}",
    "npy": "<name>_map.npy: float32 (H, W) array at the image's own size, the anomaly map in [0, 1]",
}
# an output's stem in bytes: room for "_overlay.png" and a "_k" that tells two alike apart in NAME_MAX
OUTPUT_STEM_MAX = NAME_MAX - len("_overlay.png") - 8
SAVE_EVERY_S = 10.0  # predictions.json is rewritten at most this often while a long job runs


def collect_images(inputs: list[str | Path], exclude: set[Path] | None = None) -> list[Path]:
    """Expand files and folders (recursively, sorted) into image paths; anything missing is an error.

    Files in ``exclude`` (resolved paths: earlier outputs) are left out; in a folder, hidden files
    and folders and the ``folder`` layout's mask folders are left out (the masks counted in a
    warning), and other files that are not images are skipped with a warning naming them. A broken
    symbolic link with an image's extension is kept: predicting it fails, listed with the others. A
    file given by name is kept whatever its extension: one that is no image fails the same way."""
    return [p for p, _ in collect_named(inputs, exclude)]


def _walk(folder: Path, skip_masks: bool = True) -> tuple[list[Path], dict[Path, list[Path]]]:
    """Files below ``folder`` (sorted; symbolic links to folders not followed, as ``rglob``), leaving
    out hidden files and folders and, with ``skip_masks``, the ``folder`` layout's mask folders
    (``D.MASK_FOLDERS``), returned with the files each holds."""
    files: list[Path] = []
    masks: dict[Path, list[Path]] = {}
    for top, dirs, names in os.walk(folder):
        here = Path(top)
        for d in [d for d in dirs if D.is_hidden(d) or (skip_masks and d in D.MASK_FOLDERS)]:
            dirs.remove(d)
            if not D.is_hidden(d) and not (here / d).is_symlink():  # a linked folder is not walked anyway
                masks[here / d] = _walk(here / d, skip_masks=False)[0]
        files += [here / n for n in names if not D.is_hidden(n)]
    return sorted(files), masks


def collect_named(inputs: list[str | Path], exclude: set[Path] | None = None) -> list[tuple[Path, str]]:
    """As :func:`collect_images`, each image with its output stem: its path below the folder given
    (without the extension, e.g. ``good/000``); images given as files keep their path below the
    folder that holds them all (``test/good/000.png test/hole/000.png`` -> ``good/000``, ``hole/000``;
    files of one folder keep their bare stems)."""
    exclude = exclude or set()
    found: list[tuple[Path, str]] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            files, masks = _walk(p)
            for q in files:
                broken = q.is_symlink() and not q.exists()  # listed among the failed, not passed over
                if not (q.is_file() or broken) or q.resolve() in exclude or q.name in (PREDICTIONS_FILE, LOCK_FILE):
                    continue
                if q.suffix.lower() in D.IMAGE_EXTENSIONS:
                    found.append((q, q.relative_to(p).with_suffix("").as_posix()))
                else:
                    warnings.warn(f"{q}: not an image file (by its extension); skipped", stacklevel=2)
            for folder, inside in masks.items():
                n = sum(q.suffix.lower() in D.IMAGE_EXTENSIONS and q.resolve() not in exclude for q in inside)
                if n:
                    warnings.warn(
                        f"skipped {n} mask{'s' if n != 1 else ''} under {folder} (a data set's mask folder; "
                        "name it, or its files, to predict them)",
                        stacklevel=2,
                    )
        elif p.is_symlink() and not p.exists():
            raise CavgaError(f"{p}: {D.BROKEN_LINK}")
        elif p.is_file():
            if p.resolve() in exclude:
                warnings.warn(f"{p}: written by an earlier `cavga predict` into this --out; skipped", stacklevel=2)
                continue
            found.append((p, ""))  # whatever its extension (Pillow reads .webp, .gif...); named below
        else:
            raise CavgaError(f"{p}: no such file or folder")
    if not found:
        raise CavgaError(f"no images found in {', '.join(map(str, inputs))}")
    files = [p.absolute() for p, stem in found if not stem]
    if files:
        top = Path(os.path.commonpath([f.parent for f in files]))
        found = [(p, stem or p.absolute().relative_to(top).with_suffix("").as_posix()) for p, stem in found]
    return found


def predict_to_folder(
    run_dir: str | Path,
    inputs: list[str | Path],
    out_dir: str | Path,
    device: str = "auto",
    infer: list[str] | None = None,
    on_result: Callable[[dict[str, Any]], None] | None = None,
    on_error: Callable[[str], None] | None = None,
    maps: str = "png16",
    report: bool = False,
) -> list[dict[str, Any]]:
    """Write ``<name>_overlay.png``, ``<name>_mask.png``, ``<name>_map.png`` (16-bit; ``maps="npy"``:
    ``<name>_map.npy``) per image and one ``predictions.json``; with ``report``, a gallery page
    ``OUT/report/index.html``.

    ``on_result(row)`` is called after each image is written and ``on_error(message)`` for each image
    that cannot be read (default: a warning). If any failed, a CavgaError with their count is raised
    at the end, after everything else is written (predictions.json lists them under ``failed``)."""
    if maps not in MAP_FORMATS:
        raise CavgaError(f"--maps {maps}: choose one of {', '.join(MAP_FORMATS)}")
    out_dir = check_output_folder(out_dir)
    predictor = load_predictor(run_dir, device, infer)
    with RunLock(out_dir, "predict"):
        check_predictions_file(out_dir / PREDICTIONS_FILE)
        remove_stale_temp_files(out_dir)  # left by a predict killed mid-write
        previous = earlier_outputs(out_dir)
        named = collect_named(inputs, exclude=previous)
        say_rows_dropped(out_dir / PREDICTIONS_FILE, {q.resolve() for q, _ in named})
        if report:
            check_report_targets(out_dir, len(named), previous)
        else:
            remove_stale_page(out_dir, previous)
        try:
            return _predict(predictor, run_dir, dict(named), out_dir, previous, on_result, on_error, maps, report)
        finally:
            if report and (out_dir / PREDICTIONS_FILE).is_file():  # also when some images failed
                from .report import write_predict_report

                write_predict_report(out_dir, previous)


def load_predictor(model: str | Path, device: str = "auto", infer: list[str] | None = None):
    """A run folder's Predictor, or an ExportedPredictor for a file written by ``cavga export``
    (.pt TorchScript, .onnx), whose settings were fixed when it was exported."""
    from .export import FORMATS, ExportedPredictor, is_exported_model

    if not is_exported_model(model):
        if Path(model).suffix.lower() in FORMATS.values() and not Path(model).exists():
            raise CavgaError(f"{model}: no such exported model file (nor a run folder of that name)")
        return Predictor.from_run(check_run_dir(model), device, infer)
    if infer:
        raise CavgaError(f"{model}: an exported model's inference settings are fixed; pass --set to `cavga export`")
    if resolve_device(device).type != "cpu" and device != "auto":  # one this machine lacks: refused there
        warnings.warn(f"{model}: an exported model runs on the CPU here; --device {device} is not used", stacklevel=2)
    return ExportedPredictor(model)


def _predict(predictor, run_dir, stems, out_dir, previous, on_result, on_error, maps, report) -> list[dict[str, Any]]:
    paths = list(stems)
    inputs = {p.resolve() for p in paths}
    rows: list[dict[str, Any]] = []
    failed: list[dict[str, str]] = []
    used: set[str] = set()
    written: set[Path] = set()  # this run's outputs, resolved
    size, bs, resize = predictor.cfg.data.image_size, predictor.cfg.infer.batch_size, predictor.cfg.data.resize
    last_save = time.monotonic()

    def save(final: bool = False) -> None:
        owned = {q for q in previous | written if q.exists()}  # earlier runs' outputs stay ours
        if report:
            owned |= {(out_dir / f).resolve() for f in report_files(len(rows))}  # written right after
        atomic_write_json(
            out_dir / PREDICTIONS_FILE,
            {
                "run": str(run_dir),
                "score_threshold": predictor.cfg.infer.score_threshold,
                "mask_threshold": predictor.mask_threshold,
                "mask_peak_fraction": predictor.mask_peak_fraction,
                "mask_min_area": predictor.mask_min_area,
                "mask_gate": "verdict" if predictor.mask_gate else "none",
                "maps": MAP_FORMATS[maps],
                "report": REPORT_PAGE if report else None,
                "predictions": rows,
                "failed": failed,
                "outputs": sorted(os.path.relpath(q, out_dir.resolve()) for q in owned),
            },
        )
        if final:  # predictions.json now lists every output the journal noted
            (out_dir / JOURNAL_FILE).unlink(missing_ok=True)

    def fail(path: Path, e: CavgaError) -> None:
        failed.append({"path": str(path), "error": str(e)})
        (on_error or (lambda msg: warnings.warn(msg, stacklevel=4)))(str(e))

    try:
        for i in range(0, len(paths), bs):
            chunk: list[Path] = []
            images, valid = [], []
            for p in paths[i : i + bs]:
                try:
                    x, hw = D.read_image(p, size, resize)  # (3, S, S), the image's own (H, W)
                    images.append(x)
                    valid.append(D.valid_mask(hw, size, resize))  # (1, S, S)
                    chunk.append(p)
                except CavgaError as e:
                    fail(p, e)
            if not chunk:
                continue
            pred = predictor.predict_batch(torch.stack(images), torch.stack(valid) if resize != "stretch" else None)
            for j, p in enumerate(chunk):
                try:
                    image = D.load_image(p, None)  # (3, H, W) at the image's own size
                except CavgaError as e:  # changed or vanished since it was read a moment ago
                    fail(p, e)
                    continue
                amap = native_map(pred.anomaly_map[j], tuple(image.shape[1:]), resize)  # (H, W)
                mask = answer_mask(predictor, amap, int(pred.label[j]))  # (H, W)
                name = _unique_name(p, stems[p], used, out_dir, inputs, previous, maps)
                map_file = f"{name}_map.{'npy' if maps == 'npy' else 'png'}"
                note_outputs(out_dir, [f"{name}_overlay.png", f"{name}_mask.png", map_file])
                save_png(heatmap_overlay(image, amap, mask), out_dir / f"{name}_overlay.png")
                save_png(mask_image(mask), out_dir / f"{name}_mask.png")
                if maps == "npy":
                    atomic_write(out_dir / map_file, lambda tmp, a=amap: _save_npy(tmp, a))
                else:
                    save_map16(amap, out_dir / map_file)
                remove_other_map(out_dir / f"{name}_map.{'png' if maps == 'npy' else 'npy'}", previous)
                row = {
                    "path": str(p),
                    "score": round(float(pred.score[j]), 6),
                    "verdict": "anomalous" if int(pred.label[j]) else "normal",
                    "raw_score": round(float(pred.raw_score[j]), 6),
                    "anomalous_area": round(float(np.mean(mask)), 6),
                    "overlay": f"{name}_overlay.png",
                    "mask": f"{name}_mask.png",
                    "map": map_file,
                }
                rows.append(row)
                written.update((out_dir / row[k]).resolve() for k in ("overlay", "mask", "map"))
                if on_result is not None:
                    on_result(row)
                del image, amap, mask
            if time.monotonic() - last_save > SAVE_EVERY_S:  # a killed job still lists what it wrote
                save()
                last_save = time.monotonic()
    except BaseException:  # Ctrl-C or an error: what was written so far is listed (the journal stays)
        save()
        raise
    save(final=True)
    if failed:
        raise CavgaError(
            f"{len(failed)} of {len(paths)} images could not be read (listed under 'failed' in "
            f"{out_dir / PREDICTIONS_FILE}); the other {len(rows)} were written"
        )
    return rows


def _save_npy(path: str, a: np.ndarray) -> None:
    with open(path, "wb") as f:
        np.save(f, a.astype(np.float32))


def _unique_name(
    path: Path, stem: str, used: set[str], out_dir: Path, inputs: set[Path], previous: set[Path], maps: str
) -> str:
    """An output stem (``stem``, or ``stem_1``...) whose files collide with no other output, no input,
    and no file of the user's."""

    def free(name: str) -> bool:
        for suffix in ("_overlay.png", "_mask.png", "_map.npy" if maps == "npy" else "_map.png"):
            target = out_dir / f"{name}{suffix}"
            resolved = target.resolve()
            if resolved in inputs or (target.exists() and resolved not in previous):
                return False
        return name not in used

    folder, _, last = stem.rpartition("/")
    stem = (folder + "/" if folder else "") + cut_to_bytes(last, OUTPUT_STEM_MAX)  # a long input name
    name, k = stem, 1
    while not free(name):
        name = f"{stem}_{k}"
        k += 1
    used.add(name)
    return name
