"""Load a script of ``benchmarks/`` as a module, to call its ``main(argv)`` in a test."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType


def benchmark_script(name: str) -> ModuleType:
    """``benchmarks/<name>.py``, imported under the module name ``<name>``."""
    folder = Path(__file__).parents[1] / "benchmarks"
    if str(folder) not in sys.path:  # the scripts import their sibling modules, as `python benchmarks/x.py` lets them
        sys.path.insert(0, str(folder))
    spec = importlib.util.spec_from_file_location(name, folder / f"{name}.py")
    script = importlib.util.module_from_spec(spec)
    sys.modules[name] = script  # dataclasses look their module up while the script runs
    spec.loader.exec_module(script)
    return script
