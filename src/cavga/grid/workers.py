"""``--jobs N``: a grid's cells in N spawned worker processes, and what stops them (Ctrl-C, a failed
cell, the grid process dying)."""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from .run import Cell


def run_in_workers(cells: list[Cell], todo: list[int], jobs: int, notify, record) -> None:
    """Cells ``todo`` in ``jobs`` worker processes (spawned: no state shared with this one). A failed
    cell stops the queue: cells not yet started are dropped, the running ones finish and are tabled,
    then the error is raised. Ctrl-C stops every running cell at its last complete epoch and starts
    no other.

    The pool hands a worker a cell beyond those running (its call queue), which ``cancel_futures``
    cannot take back; so a ``stop`` event, shared with the workers, is checked by each before it
    starts a cell (a cell not started returns None: not run). A worker sets it itself when its cell
    fails or is interrupted, and this process on Ctrl-C, which it then passes on to its workers:
    a ``kill -INT`` of this process alone reaches no worker otherwise (a worker acts on the first
    SIGINT only, so the terminal's Ctrl-C to the whole group and this one stop it once).

    The workers start (in ``submit``) with SIGINT blocked, which they inherit: a Ctrl-C while they
    import is held back until ``_worker_init`` ignores it, instead of a traceback from each; this
    process hears it as the submitting ends."""
    threads = max(1, torch.get_num_threads() // jobs)
    context = multiprocessing.get_context("spawn")
    stop = context.Event()  # starts multiprocessing's resource tracker, whose launch unblocks SIGINT here
    mask = _sigint_mask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        with ProcessPoolExecutor(jobs, mp_context=context, initializer=_worker_init, initargs=(threads, stop)) as pool:
            futures, error = {}, None
            try:
                for i in todo:
                    notify(cells[i], "queued")
                    futures[pool.submit(_run_cell_in_worker, cells[i])] = i
                _sigint_mask(signal.SIG_SETMASK, mask)  # a Ctrl-C held back meanwhile is raised here
                for future in as_completed(futures):
                    i = futures[future]
                    try:
                        result = future.result()
                    except Exception as e:
                        error = e if error is None else error
                        continue
                    if result is not None:
                        record(i, result)
                        notify(cells[i], "finished")
            except BaseException as e:  # Ctrl-C, or this process failed (writing the tables): start no other cell
                _sigint_mask(signal.SIG_SETMASK, mask)
                stop.set()
                if isinstance(e, KeyboardInterrupt):
                    for worker in multiprocessing.active_children():
                        os.kill(worker.pid, signal.SIGINT)
                pool.shutdown(wait=True, cancel_futures=True)
                raise
            if error is not None:
                raise error
    finally:
        _sigint_mask(signal.SIG_SETMASK, mask)


def _sigint_mask(how: int, mask: Any) -> Any:
    """``signal.pthread_sigmask(how, mask)``; nothing where there are no signal masks (Windows)."""
    return signal.pthread_sigmask(how, mask) if hasattr(signal, "pthread_sigmask") and mask is not None else None


PARENT_CHECK_SECONDS = 1.0
UNWIND_SECONDS = 5.0  # after the interrupt, before the orphan exits (its queue to the grid is gone)
_stop: Any = None  # in a worker: the grid's stop event (see _run_in_workers)


def _run_cell_in_worker(cell: Cell) -> dict[str, Any] | None:
    """``run_cell`` in a worker, unless the grid was stopped before the cell started (None: not run)."""
    signal.signal(signal.SIGINT, _interrupt_once)  # before the check: a SIGINT sent after stop was set
    try:
        if _stop.is_set():
            return None
        from .run import run_cell  # here: cavga.grid.run imports this module

        return run_cell(cell, False)
    except BaseException:
        _stop.set()  # a failed or interrupted cell stops the queue, before the grid process hears of it
        raise
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def _interrupt_once(signum: int, frame: Any) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise KeyboardInterrupt


def _worker_init(threads: int, stop: Any) -> None:
    """A worker's setup: its share of the threads, the grid's stop event, SIGINT ignored between
    cells (then unblocked: the worker started with it blocked), and a watch on the grid process. If
    the grid dies without stopping its workers (``kill``, a job scheduler's SIGTERM or SIGKILL, a
    closed terminal), the worker interrupts itself as Ctrl-C would, so its cell stops at its last
    complete epoch (a rerun of the grid resumes it) instead of training on, orphaned, beside the
    next grid; then it exits, since nobody is left to give it another cell. Checkpoints are written
    atomically, so an exit inside a save loses at most that epoch."""
    global _stop
    _stop = stop
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C held back since the start is dropped, unsaid
    _sigint_mask(signal.SIG_UNBLOCK, {signal.SIGINT})  # blocked by the grid while it started us
    torch.set_num_threads(threads)
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_CHECK_SECONDS)
        _stop.set()
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(UNWIND_SECONDS)
        os._exit(130)

    threading.Thread(target=watch, name="cavga-grid-parent-watch", daemon=True).start()
