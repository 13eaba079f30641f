"""The built leaderboard page in a real browser: Debian's Chromium driven by Playwright, opened from file://.

Skips (and `make test` says so) when no Chromium is found, unless ECAC_REQUIRE_BROWSER=1 (CI sets it), where that is
a failure; see tests/browser.py for where it looks.
"""

from __future__ import annotations

from pathlib import Path

import browser
import pytest
from browser import CHROMIUM_ARGS, require_browser

from ecac_bench.leaderboard import build_site

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def page_url(tmp_path_factory):
    out = tmp_path_factory.mktemp("site")
    build_site([REPO / "baselines" / "reported"], [REPO / "leaderboard" / "runs"], out)
    return (out / "index.html").as_uri()


@pytest.fixture
def page(page_url):
    sync_playwright, chromium = require_browser()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1366, "height": 900})
            page.errors = []  # console errors and uncaught exceptions, checked by the test
            page.on("console", lambda msg: page.errors.append(msg.text) if msg.type == "error" else None)
            page.on("pageerror", lambda exc: page.errors.append(str(exc)))
            page.goto(page_url)
            yield page
        finally:
            browser.close()


def column(page, table: str, index: int) -> list[str]:
    """Cell texts of one column, in the order shown (a trailing "*" marks a conflict footnote)."""
    texts = page.locator(f"{table} tbody tr").evaluate_all(f"rows => rows.map(r => r.cells[{index}].innerText.trim())")
    return [t.rstrip("*") for t in texts]


def test_sorting_filter_and_no_console_errors(page, tmp_path):
    main = "#board-1-main"
    by_rank = column(page, main, 1)
    assert by_rank[0].startswith("KinderMM-Cap-3B") and len(by_rank) == 8

    page.click(f"{main} thead th:nth-child(2) button")  # Model: A-Z
    by_name = column(page, main, 1)
    assert by_name != by_rank
    assert by_name == sorted(by_rank, key=str.lower) or by_name == sorted(by_rank)
    assert page.get_attribute(f"{main} thead th:nth-child(2)", "aria-sort") == "ascending"

    page.click(f"{main} thead th:nth-child(4) button")  # TTS: best first, then reversed
    tts = [float(v) for v in column(page, main, 3)]
    assert tts == sorted(tts, reverse=True)
    page.click(f"{main} thead th:nth-child(4) button")
    assert [float(v) for v in column(page, main, 3)] == sorted(tts)

    page.click(f"{main} thead th:nth-child(8) button")  # judge score: missing values stay last
    judge = column(page, main, 7)
    values = [float(v) for v in judge if v != "—"]
    assert values == sorted(values, reverse=True) and judge[len(values) :] == ["—"] * (len(judge) - len(values))

    reported, measured = page.locator("tr.reported-row"), page.locator("tr.measured-row")
    assert reported.count() > 0 and measured.count() > 0
    page.click("button[data-filter-value=measured]")
    assert not any(reported.nth(i).is_visible() for i in range(reported.count()))
    assert not page.is_visible("#board-1") and page.is_visible("#board-2")  # the paper's board has no measured row
    assert page.locator("#board-2-main tr.measured-row").first.is_visible()
    assert page.get_attribute("button[data-filter-value=measured]", "aria-pressed") == "true"
    page.click("button[data-filter-value=reported]")
    assert page.locator(f"{main} tr.reported-row").first.is_visible()
    assert page.is_visible("#board-1") and not page.is_visible("#board-2")
    assert not any(measured.nth(i).is_visible() for i in range(measured.count()))
    page.click("button[data-filter-value=all]")
    assert page.locator(f"{main} tbody tr:visible").count() == 8

    assert page.locator("#board-1-scatter circle").count() >= 6
    assert page.locator("#board-2-levels rect").count() > 0

    shot = tmp_path / "leaderboard.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    assert page.errors == []


def test_missing_browser_skips_unless_required(monkeypatch, tmp_path):
    monkeypatch.setenv("ECAC_CHROMIUM", str(tmp_path / "no-chromium"))
    monkeypatch.setenv("ECAC_REQUIRE_BROWSER", "1")
    with pytest.raises(pytest.fail.Exception, match="ECAC_REQUIRE_BROWSER=1"):
        require_browser()
    monkeypatch.delenv("ECAC_REQUIRE_BROWSER")
    with pytest.raises(pytest.skip.Exception, match="ECAC_CHROMIUM"):
        require_browser()
    browser.skipped.clear()  # this skip was provoked: keep it out of the end-of-run notice


def test_chromium_is_found_on_path_or_through_the_variable(monkeypatch, tmp_path):
    fake = tmp_path / "bin" / "chromium"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.delenv("ECAC_CHROMIUM", raising=False)
    monkeypatch.setenv("PATH", str(fake.parent))
    assert browser.chromium_path() == fake
    monkeypatch.setenv("ECAC_CHROMIUM", str(fake))
    monkeypatch.setenv("PATH", "")
    assert browser.chromium_path() == fake
