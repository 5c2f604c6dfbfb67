"""The speed benchmark (issue 11): throughput and FLOPs against the machine's measured matmul peak
(its command line, `cavga benchmark --speed` and benchmarks/speed.py: ``cavga.speed.command``)."""

from .bench import SpeedOptions, check_options, measure_one, run_speed
from .flops import PARTS, count_flops, matmul_peak, step_flops_by_part
from .report import format_report, write_report

__all__ = [
    "PARTS",
    "SpeedOptions",
    "check_options",
    "count_flops",
    "format_report",
    "matmul_peak",
    "measure_one",
    "run_speed",
    "step_flops_by_part",
    "write_report",
]
