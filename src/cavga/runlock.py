"""One writer per run folder: an exclusive lock held for the whole life of a train, evaluate, predict or
validate (and by redecide while it reads and copies the run).

The lock is ``RUN/.lock``, locked with ``flock`` (so the kernel releases it when its process dies,
even by ``kill -9``) and holding the holder's pid, host, command and start time. A second writer
gets a one-line error naming the holder; a lock file left behind by a dead process is taken over.
"""

from __future__ import annotations

import functools
import inspect
import json
import os
import socket
import stat
import sys
import time
import warnings
from pathlib import Path
from typing import Any

from .errors import CavgaError
from .io_utils import make_folder, remove_empty

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: fall back to the pid check alone
    fcntl = None  # type: ignore[assignment]

LOCK_FILE = ".lock"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _alive_here(holder: dict[str, Any]) -> bool:
    """Without flock: is the recorded holder a running process on this host?"""
    pid = holder.get("pid")
    return isinstance(pid, int) and holder.get("host") == socket.gethostname() and _alive(pid)


def _describe(holder: dict[str, Any]) -> str:
    cmd = holder.get("command") or "?"
    return f"pid {holder.get('pid', '?')} on {holder.get('host', '?')} ({cmd}, since {holder.get('started', '?')})"


class RunLock:
    """``with RunLock(folder, "train"):`` holds ``folder/.lock`` exclusively; creates ``folder`` if needed.

    A folder the lock created and left empty (a run that stopped before writing anything) is removed
    again on release, so a failed start leaves nothing behind.
    """

    def __init__(self, folder: str | Path, what: str, create: bool = True):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_FILE
        self.what = what
        self.create = create  # False: a missing folder is not created (and there is nothing to lock)
        self._fd: int | None = None
        self._created: list[Path] = []

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def acquire(self) -> None:
        if not self.create and not self.folder.is_dir():
            return
        # the folders this lock creates, deepest first: removed again if the run leaves them empty
        self._created = make_folder(self.folder)
        if self.path.is_symlink():  # truncating its target would empty a file of anyone's
            raise CavgaError(f"{self.path}: the folder's lock file is a symbolic link; remove it")
        try:  # O_NOFOLLOW: nor one put there meanwhile
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
        except OSError as e:
            raise CavgaError(f"{self.path}: cannot open the folder's lock file ({e.strerror or e})") from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise CavgaError(f"{self.path}: the folder's lock file is not a regular file; remove it")
        holder = _read(fd)
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            elif _alive_here(holder):
                raise BlockingIOError
        except BlockingIOError:
            os.close(fd)
            raise CavgaError(
                f"{self.folder}: in use by {_describe(holder)}; two writers would mix their runs, "
                f"so wait for it to finish or use another folder"
            ) from None
        if holder.get("pid") not in (None, os.getpid()):  # not released: its holder ended without a word
            warnings.warn(f"{self.path}: taking over the lock left by {_describe(holder)}, which ended", stacklevel=3)
        me = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "command": f"cavga {self.what}",
            "argv": sys.argv,
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(me).encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        os.ftruncate(self._fd, 0)  # an empty lock file: nobody holds the folder
        if self._created and [p.name for p in self.folder.iterdir()] == [LOCK_FILE]:
            os.remove(self.path)
            remove_empty(self._created)
        os.close(self._fd)  # closing releases the flock
        self._fd = None


def _read(fd: int) -> dict[str, Any]:
    try:
        raw = os.pread(fd, 65536, 0)
        holder = json.loads(raw.decode()) if raw.strip() else {}
    except (OSError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}


def locked(what: str, create: bool = False):
    """Decorator: hold the lock of the folder given as the function's first argument while it runs."""

    def wrap(fn):
        first = next(iter(inspect.signature(fn).parameters))

        @functools.wraps(fn)
        def inner(*args, **kwargs):
            with RunLock(args[0] if args else kwargs[first], what, create=create):
                return fn(*args, **kwargs)

        return inner

    return wrap
