"""Screenshot of a run's report page in headless Chromium: ``python benchmarks/report_screenshot.py RUN_DIR OUT.png``.

Writes ``RUN_DIR/report/index.html`` first if it is missing (``cavga report``). Needs Playwright
(``pip install "cavga[browser]"``) and the system Chromium (``apt-get install chromium``).
Add ``--top`` to capture only the first screen (a laptop-sized 1366x900 window) instead of the whole page.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cavga.report import write_run_report
from cavga.report.browser import screenshot


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir")
    ap.add_argument("out_png")
    ap.add_argument("--top", action="store_true", help="only the first screen, not the whole page")
    args = ap.parse_args()
    page = Path(args.run_dir) / "report" / "index.html"
    if not page.is_file():
        write_run_report(args.run_dir)
    print(f"written: {screenshot(page, args.out_png, full_page=not args.top)}")


if __name__ == "__main__":
    main()
