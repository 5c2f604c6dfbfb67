"""Atomic file writes: a reader sees the old file or the new one, never half of one."""

from __future__ import annotations

import io
import json
import os
import re
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .errors import CavgaError

NAME_MAX = 255  # bytes in one file name on the usual file systems (ext4, xfs, APFS, NTFS in UTF-16 units)
_TEMP = re.compile(r"\..*\.[0-9a-f]{8}\.tmp")  # what _temp_path makes, and all remove_stale_temp_files removes


def cut_to_bytes(name: str, limit: int) -> str:
    """``name`` cut (on a character boundary) to at most ``limit`` bytes in the file system's encoding."""
    raw = os.fsencode(name)
    return name if len(raw) <= limit else os.fsdecode(raw[:limit].decode("utf-8", "ignore").encode())


def _temp_path(path: Path) -> Path:
    """A new empty file ``.<name>.<random>.tmp`` beside ``path`` (the name cut to fit a file name),
    created with the umask's permissions (``mkstemp`` would make it, and so the final file, 0600
    whatever the umask)."""
    base = cut_to_bytes(path.name, NAME_MAX - 14)  # "." + base + ".<8 hex>.tmp"
    while True:
        tmp = path.parent / f".{base}.{secrets.token_hex(4)}.tmp"
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return tmp
        except FileExistsError:  # pragma: no cover - 1 in 4 billion
            continue


def atomic_write(path: str | os.PathLike, write: Callable[[str], None], durable: bool = False) -> Path:
    """Call ``write(tmp_path)`` on a temporary file beside ``path``, then rename it over ``path``.

    ``durable``: the file's bytes reach the disk before the rename, and the rename before returning
    (fsync of the file, then of its folder), so that not even a power cut can leave ``path`` empty
    or half-written (checkpoints; a few milliseconds a file, so not for every prediction)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = str(_temp_path(path))
    except OSError as e:  # the folder, or the temporary file beside the file: named as the file
        raise CavgaError(f"{path}: cannot write this file ({os_reason(e, path.parent)})") from None
    try:
        write(tmp)
        if durable:
            _fsync(tmp)
        os.replace(tmp, path)
    except OSError as e:  # a full disk, a quota: named as the file being written, which is left as it was
        if os.path.exists(tmp):
            os.remove(tmp)
        raise CavgaError(f"{path}: cannot write this file ({e.strerror or e}); it is left as it was") from None
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    if durable:
        _fsync(path.parent, getattr(os, "O_DIRECTORY", 0))
    return path


def write_serialised(tmp: str, serialise: Callable[[io.BytesIO], None]) -> None:
    """``serialise`` into memory, then the bytes into the file ``tmp`` by Python's own writes.

    torch's file writer reports a full disk or a file-size limit as a RuntimeError (``unexpected
    pos``), and ``torch.jit.save`` aborts the process on one; Python's write raises the OSError that
    :func:`atomic_write` names ("No space left on device"). The file's bytes are held twice meanwhile."""
    buffer = io.BytesIO()
    serialise(buffer)
    with open(tmp, "wb") as f:
        f.write(buffer.getbuffer())


def _fsync(path: str | os.PathLike, flags: int = 0) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | flags)
    except OSError:  # a folder where the OS cannot open one (Windows): the rename stands as is
        return
    try:
        os.fsync(fd)
    except OSError:  # a file system that cannot sync a folder
        pass
    finally:
        os.close(fd)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)

    return atomic_write(path, write)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def remove_stale_temp_files(folder: str | os.PathLike) -> list[Path]:
    """Delete the ``.<name>.<8 hex digits>.tmp`` files that a killed atomic write left in ``folder``;
    return them. Other hidden files, whatever they end in, are not this package's and stay.

    Only call this while holding the folder's lock (no other writer is then mid-write)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    stale = [p for p in folder.glob(".*.tmp") if p.is_file() and _TEMP.fullmatch(p.name)]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def _exists(path: Path) -> bool:
    """``path.exists()``, False where the OS will not look it up (a name too long)."""
    try:
        return path.exists()
    except OSError:
        return False


def os_reason(e: OSError, folder: str | os.PathLike) -> str:
    """Why the OS could not create ``folder`` or a file in it (``e``): a file in the way where one of
    ``folder`` and its parents is a file, else the OS's reason, naming the path it gives where that is
    a parent of ``folder``."""
    folder = Path(folder)
    blocker = next((p for p in (folder, *folder.parents) if _exists(p) and not p.is_dir()), None)
    if blocker is not None:
        return f"{blocker} is a file"
    reason = e.strerror or str(e)
    named = None if e.filename is None else Path(os.fsdecode(e.filename))
    return f"{named}: {reason}" if named is not None and named in folder.parents else reason


def remove_empty(folders: list[Path]) -> None:
    """Remove ``folders`` (the ones a call created or meant to, deepest first) that are empty: one that
    holds something put there since stays, and so, being not empty, do the folders above it."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:  # not empty, never made (a creation that failed before it), or a name too long
            pass


def make_folder(path: str | os.PathLike) -> list[Path]:
    """Create the folder ``path`` and its missing parents; return those it created, deepest first. A
    folder that cannot be created is a one-line CavgaError naming it and the OS's reason (the parents
    made on the way are removed again)."""
    path = Path(path)
    created = [p for p in (path, *path.parents) if not _exists(p)]
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        remove_empty(created)  # only those this call made
        raise CavgaError(f"{path}: cannot create this folder ({os_reason(e, path)})") from None
    return created


def check_output_folder(path: str | os.PathLike, flag: str = "--out", trial: bool = False) -> Path:
    """Make sure ``path`` is, or can be created as, a writable folder, before any work starts.

    ``trial``: a missing ``path`` is also created, and removed again, to hear what the OS says (a
    place where nothing can be made, as /proc, or a name too long), for a caller that makes it much
    later; not while another process may make the same folder (the ranks of a torchrun)."""
    path = Path(path)
    try:
        return _check_output_folder(path, flag, trial)
    except OSError as e:  # a path the OS will not even look up (a name too long, a loop of links)
        raise CavgaError(f"{flag} {path}: cannot create this folder ({os_reason(e, path)})") from None


def _check_output_folder(path: Path, flag: str, trial: bool) -> Path:
    if path.exists() and not path.is_dir():
        raise CavgaError(f"{flag} {path}: exists and is not a folder")
    parent = path
    while not parent.exists():
        if parent.parent == parent:
            break
        parent = parent.parent
    if parent.exists() and not parent.is_dir():
        raise CavgaError(f"{flag} {path}: cannot create this folder, {parent} is a file")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise CavgaError(f"{flag} {path}: cannot write in {parent} (permission denied)")
    if trial and not path.exists():
        remove_empty(make_folder(path))
    return path


def read_json(path: str | Path, missing: str, what: str) -> Any:
    """A JSON file's content; a missing file is a one-line CavgaError ending in ``missing`` (what to
    do), an unreadable one names ``what`` it should have been."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CavgaError(f"{path}: missing; {missing}") from None
    except (OSError, ValueError) as e:
        raise CavgaError(f"{path}: unreadable {what} ({e})") from None


def json_with_keys(path: Path, keys: set[str]) -> bool:
    """Whether ``path`` holds a JSON object with at least ``keys``: how a command knows its own files."""
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(saved, dict) and keys <= saved.keys()


def table_files(out: Path, json_name: str, keys: set[str], others: tuple[str, ...]) -> dict[Path, Callable]:
    """A results folder's files for :func:`refuse_foreign`: ``json_name`` is the command's own when it
    holds ``keys``; ``others`` (its tables and page, written with it) are its own when that JSON is."""
    ours = json_with_keys(out / json_name, keys)
    return {out / json_name: lambda p: ours, **{out / name: lambda p: ours for name in others}}


def refuse_foreign(files: dict[Path, Callable[[Path], bool]], command: str, flag: str = "--out") -> None:
    """Before any work: a CavgaError for the first of ``files`` that exists and that its recogniser
    does not take for ``command``'s own output, which the command would replace (a user's config.yaml
    or results.md in the folder given as ``flag``). Files that do not exist are fine."""
    for path, ours in files.items():
        if (path.exists() or path.is_symlink()) and not (path.is_file() and ours(path)):
            raise CavgaError(f"{path}: not written by `cavga {command}`; it would be replaced (use another {flag})")


def refuse_linked_folders(folders: list[Path], command: str) -> None:
    """Refuse, before any write, output folders that are symbolic links: writing through one would
    replace files elsewhere."""
    for folder in folders:
        if folder.is_symlink():
            raise CavgaError(f"{folder}: a symbolic link; `cavga {command}` writes only into real folders (remove it)")
