"""Open a report page in the system's headless Chromium (Playwright drives it; no browser download).

Used by the browser test and ``benchmarks/report_screenshot.py``. Needs ``pip install playwright``
(the ``browser`` extra) and Chromium from the system packages (``apt-get install chromium``).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def chromium_path() -> str | None:
    """The system Chromium: ``$CHROMIUM`` or the first of chromium / chromium-browser on the PATH."""
    env = os.environ.get("CHROMIUM")
    if env:
        return env if Path(env).is_file() else None
    return shutil.which("chromium") or shutil.which("chromium-browser")


@contextmanager
def open_page(html: str | Path, width: int = 1366, height: int = 900) -> Iterator[tuple[object, list[str]]]:
    """Yield (the Playwright page showing ``html``, the console errors and page errors seen so far)."""
    from playwright.sync_api import sync_playwright

    exe = chromium_path()
    if exe is None:
        raise RuntimeError("no Chromium found (apt-get install chromium, or set CHROMIUM)")
    errors: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("requestfailed", lambda r: errors.append(f"failed to load {r.url}"))
            page.goto(Path(html).resolve().as_uri(), wait_until="load")
            yield page, errors
        finally:
            browser.close()


def screenshot(html: str | Path, out_png: str | Path, full_page: bool = True) -> Path:
    """Save a PNG screenshot of the page ``html`` (a laptop-sized window; the whole page by default)."""
    with open_page(html) as (page, _):
        page.screenshot(path=str(out_png), full_page=full_page)
    return Path(out_png)
