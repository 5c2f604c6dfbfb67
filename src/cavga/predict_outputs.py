"""Which files in ``cavga predict``'s ``--out`` are its own: the outputs earlier runs listed in
``predictions.json`` or noted in the journal before writing them, and the checks that keep a user's
files there (a ``predictions.json`` or report file predict did not write, linked report folders)
from ever being replaced or read back as inputs."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

from .errors import CavgaError
from .io_utils import json_with_keys, refuse_foreign

PREDICTIONS_FILE = "predictions.json"
REPORT_DIR = "report"  # predict --report: the gallery page and its thumbnails
REPORT_PAGE = f"{REPORT_DIR}/index.html"
# Each output's name, noted here before it is written and until predictions.json lists it: a run
# killed between two saves (kill -9, a power cut) still leaves its files known as predict's, so the
# next run replaces them instead of writing "_1" copies beside them or reading them as inputs.
JOURNAL_FILE = ".predict-outputs"


def report_thumbnail(i: int) -> str:
    """The ``--report`` page's thumbnail of the ``i``-th prediction, relative to ``--out``."""
    return f"{REPORT_DIR}/img/{i:04d}_input.png"


def report_files(n: int) -> list[str]:
    """Every file ``--report`` writes for ``n`` predictions, relative to ``--out``."""
    return [REPORT_PAGE] + [report_thumbnail(i) for i in range(n)]


def earlier_outputs(out_dir: str | Path) -> set[Path]:
    """Resolved paths of the files earlier ``predict`` runs into ``out_dir`` wrote: its predictions.json
    lists them under ``outputs`` (every run's, while they exist), and, for folders written before that
    list, the rows' files and the report's page and thumbnails."""
    out_dir = Path(out_dir)
    names = journal(out_dir)  # a killed run's, noted before they were written
    try:
        saved = json.loads((out_dir / PREDICTIONS_FILE).read_text(encoding="utf-8"))
        rows = saved.get("predictions", [])
        listed = [r.get(k) for r in rows if isinstance(r, dict) for k in ("overlay", "mask", "map")]
        listed += list(saved.get("outputs", []))
        names += listed + (report_files(len(rows)) if saved.get("report") else [])
    except (OSError, ValueError, AttributeError, TypeError):
        pass
    inside = out_dir.resolve()
    found = {(out_dir / n).resolve() for n in names if isinstance(n, str) and not Path(n).is_absolute()}
    return {q for q in found if q.is_relative_to(inside)}  # a list edited to name files elsewhere claims none


def journal(out_dir: Path) -> list[str]:
    """The output names :data:`JOURNAL_FILE` notes (none where it is missing or not a file of ours)."""
    path = out_dir / JOURNAL_FILE
    if path.is_symlink() or not path.is_file():
        return []
    names = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            names.append(json.loads(line))
        except ValueError:  # a line cut short by the kill
            continue
    return [n for n in names if isinstance(n, str)]


def note_outputs(out_dir: Path, names: list[str]) -> None:
    """Append ``names`` to :data:`JOURNAL_FILE` before their files are written (never through a link)."""
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(out_dir / JOURNAL_FILE, flags, 0o644)
    except OSError as e:
        raise CavgaError(f"{out_dir / JOURNAL_FILE}: cannot note predict's outputs ({e.strerror or e})") from None
    with os.fdopen(fd, "a", encoding="utf-8") as f:
        f.writelines(json.dumps(n) + "\n" for n in names)


def check_predictions_file(path: Path) -> None:
    """Refuse to replace a ``predictions.json`` that an earlier ``predict`` did not write (a dangling
    link there is replaced, as it always was)."""
    if path.exists():
        refuse_foreign({path: lambda p: json_with_keys(p, {"run", "predictions"})}, "predict")


def check_report_targets(out_dir: Path, n: int, previous: set[Path]) -> None:
    """Refuse ``--report`` before any work if one of its files would replace a file of the user's, or
    its folders are symbolic links (they would lead its writes and deletions out of ``--out``)."""
    for folder in (out_dir / REPORT_DIR, out_dir / REPORT_DIR / "img"):
        if folder.is_symlink():
            raise CavgaError(f"{folder}: a symbolic link; --report writes only into real folders (use another --out)")
    for name in report_files(n):
        target = out_dir / name
        if target.exists() and target.resolve() not in previous:
            raise CavgaError(f"{target}: not written by `cavga predict`; --report would replace it (use another --out)")


def remove_stale_page(out_dir: Path, previous: set[Path]) -> None:
    """Remove an earlier ``--report`` page (``previous``: the outputs predict recorded) before a run
    without ``--report``: it would list the earlier images beside overlays that now hold new results.
    Its thumbnails stay, still recorded as predict's; a later ``--report`` replaces them."""
    page = out_dir / REPORT_PAGE
    if page.resolve() in previous and page.is_file() and not page.is_symlink() and not page.parent.is_symlink():
        page.unlink()


def say_rows_dropped(path: Path, now: set[Path]) -> None:
    """Warn where the ``predictions.json`` about to be replaced lists images this run does not predict
    again (``now``: resolved paths): their rows go, their files stay."""
    try:
        rows = json.loads(path.read_text(encoding="utf-8")).get("predictions", [])
        gone = sum(Path(r["path"]).resolve() not in now for r in rows if isinstance(r, dict) and "path" in r)
    except (OSError, ValueError, AttributeError, TypeError):
        return  # no earlier list (or _check_predictions_file has refused it)
    if gone:
        warnings.warn(
            f"{path}: replaced; it listed {gone} earlier prediction{'s' if gone != 1 else ''} of images not given "
            "now, whose rows go while their overlay, mask and map files stay (use another --out to keep both lists)",
            stacklevel=3,
        )


def remove_other_map(path: Path, previous: set[Path]) -> None:
    """Remove an earlier run's map of the same output in the other ``--maps`` format, which would sit
    stale beside the new one; only a file predict recorded as its own (``previous``) goes."""
    if path.is_file() and not path.is_symlink() and path.resolve() in previous:
        path.unlink()
