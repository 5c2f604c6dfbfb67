"""The `cavga` command line: it parses arguments and calls library functions, nothing more.

:mod:`.parser` holds the subcommands and their help, :mod:`.flags` turns flags into a run's config,
:mod:`.commands` calls one library function per subcommand, and :mod:`.show` prints what it returns.
"""

from __future__ import annotations

import os
import sys
import warnings

from ..errors import CavgaError
from .commands import dispatch, is_speed_flag, speed
from .flags import with_flag
from .parser import build_parser

__all__ = ["build_parser", "main"]


def main(argv: list[str] | None = None) -> int:
    """``cavga ARGS``: run one subcommand; 0 on success, 2 on an error said in one line, 130 on Ctrl-C."""
    argv = sys.argv[1:] if argv is None else list(argv)
    is_speed = argv[:1] == ["benchmark"] and any(is_speed_flag(t) for t in argv[1:])  # its own parser
    args = None if is_speed else build_parser().parse_args(argv)
    warnings.showwarning = _show_warning
    try:
        return speed(argv[1:]) if is_speed else dispatch(args)
    except CavgaError as e:
        _say_error(with_flag(str(e), args))
        return 2
    except OSError as e:  # a file the OS refused (disk full, permission): one line; a bug keeps its traceback
        if not isinstance(e.filename, (str, bytes, os.PathLike)):  # none, or a descriptor: a bug's
            raise
        _say_error(f"{os.fsdecode(e.filename)}: {e.strerror or e}")
        return 2
    except RuntimeError as e:  # under torchrun: another rank stopped (rank 0's error is above), one line here
        from ..distributed import peer_stopped

        if os.environ.get("RANK", "0") == "0" or not peer_stopped(e):
            raise
        _say_error("another rank stopped (rank 0's own error, if it had one, is above); this rank stops too")
        return 2
    except KeyboardInterrupt:
        if os.environ.get("RANK", "0") != "0":  # under torchrun, rank 0 speaks for all
            return 130
        command = None if args is None else args.command
        again = {  # how each training command continues
            "train": "; --resume continues from the last saved epoch (or from the start if none was saved)",
            "demo": "; the same command again continues from the last saved epoch",
            "benchmark": "; the same command again continues (finished cells are kept, a cell from its last epoch)",
        }
        print("cavga: interrupted" + again.get(command, ""), file=sys.stderr)
        return 130


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings as one line, ``cavga: warning: ...``, without the line of Python source; under torchrun
    rank 0 alone says them (every rank would say the same)."""
    if os.environ.get("RANK", "0") != "0":
        return
    print(f"cavga: warning: {message}", file=file or sys.stderr)


def _say_error(message: str) -> None:
    rank = os.environ.get("RANK", "0")  # under torchrun every rank may fail alike: say which one speaks
    print(f"cavga: error{'' if rank == '0' else f' (rank {rank})'}: {message}", file=sys.stderr)
