"""The report in a real browser (headless system Chromium via Playwright): it renders without console
errors, every image loads, and sorting the gallery works. Opt in with ``pytest -m browser``."""

import importlib.util

import pytest

from _tiny_run import shared_data, shared_run
from cavga.cli import main
from cavga.report.browser import chromium_path

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(importlib.util.find_spec("playwright") is None, reason="playwright is not installed "
                       '(pip install "cavga[browser]")'),
    pytest.mark.skipif(chromium_path() is None, reason="no system Chromium (apt-get install chromium)"),
]  # fmt: skip

CARDS = "#gallery > .card"


def _order(page, attr: str) -> list[str]:
    return page.eval_on_selector_all(CARDS, f"els => els.map(e => e.dataset.{attr})")


def _check_loads(page, errors) -> int:
    broken = page.eval_on_selector_all(
        "img", "els => els.filter(i => !i.complete || i.naturalWidth === 0).map(i => i.src)"
    )
    assert broken == [] and errors == []
    return page.eval_on_selector_all("img", "els => els.length")


@pytest.mark.parametrize("model", ["Du", "Dw"])
def test_run_report_renders_loads_and_sorts(tmp_path_factory, model):
    from cavga.report.browser import open_page

    run = shared_run(tmp_path_factory, model)
    with open_page(run / "report" / "index.html") as (page, errors):
        n_cards = page.eval_on_selector_all(CARDS, "els => els.length")
        assert n_cards > 0 and _check_loads(page, errors) == 4 * n_cards + 3  # 4 panels a card, 3 figures
        errors_first = [float(v) for v in _order(page, "error")]
        assert errors_first == sorted(errors_first, reverse=True)  # the default: worst first

        page.click("button[data-sort=score]")
        scores = [float(v) for v in _order(page, "score")]
        assert scores == sorted(scores, reverse=True)
        before = _order(page, "name")
        page.click("button[data-sort=name]")
        names = _order(page, "name")
        assert names == sorted(names) != before  # the click reordered the cards
        page.click("button[data-sort=defect]")
        defects = _order(page, "defect")
        assert defects == sorted(defects)
        assert page.eval_on_selector("button.active", "b => b.dataset.sort") == "defect"
        page.click("button[data-sort=error]")
        assert [float(v) for v in _order(page, "error")] == errors_first
        assert errors == []

        page.emulate_media(media="print")  # printing hides the buttons; the page makes a PDF
        assert page.eval_on_selector(".controls", "e => getComputedStyle(e).display") == "none"
        assert page.pdf(format="A4")[:4] == b"%PDF"


def test_predict_gallery_renders_and_sorts(tmp_path_factory, tmp_path):
    from cavga.report.browser import open_page

    run = shared_run(tmp_path_factory)
    folder = shared_data(tmp_path_factory) / "brick" / "test"
    out = tmp_path / "pred"
    assert main(["predict", str(run), str(folder), "--out", str(out), "--device", "cpu", "--report"]) == 0
    with open_page(out / "report" / "index.html") as (page, errors):
        n_cards = page.eval_on_selector_all(CARDS, "els => els.length")
        assert n_cards == len(list(folder.rglob("*.png"))) and _check_loads(page, errors) == 3 * n_cards
        page.click("button[data-sort=name]")
        names = _order(page, "name")
        assert names == sorted(names)
        page.click("button[data-sort=score]")
        scores = [float(v) for v in _order(page, "score")]
        assert scores == sorted(scores, reverse=True)
