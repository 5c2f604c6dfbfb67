"""Re-run the end of training on a finished run, in a copy (``cavga redecide``, kept under this name
for the commands in docs/results.md): the ``auto`` inference settings decided on painted held-out
normals with today's code, no weight changes, no test image (:mod:`cavga.redecide`).

    .venv/bin/python benchmarks/redecide.py runs/old runs/old-redecided --set infer.mask_quantile=auto
    .venv/bin/cavga validate runs/old-redecided && .venv/bin/cavga evaluate runs/old-redecided
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cavga.redecide import redecide_run


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("out", type=Path, help="the copy to write (must not exist)")
    ap.add_argument("--set", action="append", default=[], help="infer.* settings to decide with (e.g. auto)")
    ap.add_argument("--device", default="auto")
    args = ap.parse_args(argv)
    for key, value in redecide_run(args.run, args.out, args.set, args.device).items():
        print(key, value)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
