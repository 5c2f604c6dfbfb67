"""HTML reports: one page per evaluated run, per benchmark grid and per ``predict`` folder."""

from .benchmark_report import write_benchmark_report
from .predict_report import write_predict_report
from .run_report import write_run_report

__all__ = ["write_benchmark_report", "write_predict_report", "write_run_report"]
