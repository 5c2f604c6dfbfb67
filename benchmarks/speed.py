"""Speed benchmark (issue 11): training and inference images/s, peak memory and FLOPs per image of
CAVGA's variants, each as a fraction of this machine's dense matmul peak measured in the same run.

    OMP_NUM_THREADS=2 PYTHONPATH=src python benchmarks/speed.py                 # the full grid
    PYTHONPATH=src python benchmarks/speed.py --variants Du --sizes 128 --steps 3 --no-sweep

The same as ``cavga benchmark --speed`` (cavga.speed.command), with --out defaulting to
benchmarks/results/speed. On CUDA the training step runs under bf16 autocast with channels_last
(--no-bf16, --no-channels-last to compare) and its fraction is of the measured bf16 peak. Writes
<out>/<name>.json and .md (an existing one only with --overwrite); see docs/performance.md.
"""

from __future__ import annotations

import sys

from cavga.speed.command import SCRIPT_OUT, speed_main


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    return speed_main(argv, "python benchmarks/speed.py", SCRIPT_OUT, __doc__.splitlines()[0])


if __name__ == "__main__":
    sys.exit(main())
