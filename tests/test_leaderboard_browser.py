"""The built leaderboard page in a real browser: Debian's Chromium driven by Playwright, opened from file://, at a
desktop width (1400 px) and a phone width (400 px).

At both widths: the page never scrolls sideways (tables and charts scroll inside their own boxes), no visible text is
rendered below 11 px (SVG text measured through its transform to the screen), and no word is broken inside itself
(a line may break after a hyphen or a slash, as browsers do, never elsewhere; a model name not even there). At 400 px
the TTS column of every ranking is fully in view. The filters, the search, sorting and the BibTeX copy buttons work,
with no console error. Full-page screenshots are saved in a pytest temporary folder, printed at the start.

Skips (and `make test` says so) when no Chromium is found, unless ECAC_REQUIRE_BROWSER=1 (CI sets it), where that is
a failure; see tests/browser.py for where it looks. One browser serves the whole module.
"""

from __future__ import annotations

from pathlib import Path

import browser
import pytest
from browser import launched_chromium, layout_problems, open_page, require_browser

from ecac_bench.leaderboard import build_site

REPO = Path(__file__).resolve().parents[1]
WIDTHS = (1400, 400)
# The TTS column of every ranking (the third: test_sorting_and_the_source_filter pins the headers).
TTS_CELLS = "table.lb.main tr > :nth-child(3)"


@pytest.fixture(scope="module")
def page_url(tmp_path_factory):
    out = tmp_path_factory.mktemp("site") / "site"
    build_site([REPO / "baselines" / "reported"], [REPO / "leaderboard" / "runs"], out)
    return (out / "index.html").as_uri()


@pytest.fixture(scope="module")
def chromium():
    with launched_chromium() as launched:
        yield launched


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory, pytestconfig):
    folder = tmp_path_factory.mktemp("leaderboard-screenshots")
    capture = pytestconfig.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled():  # shown in the test output, even with -q
        print(f"\nleaderboard screenshots (1400 px, 400 px wide): {folder}")
    return folder


@pytest.fixture
def page(chromium, page_url):
    page = open_page(chromium, page_url, 1400)
    yield page
    page.close()


def column(page, table: str, index: int) -> list[str]:
    """Cell texts of one column, in the order shown (a trailing "*" marks a conflict footnote; "±" the CI)."""
    texts = page.locator(f"{table} tbody tr").evaluate_all(f"rows => rows.map(r => r.cells[{index}].innerText.trim())")
    return [t.rstrip("*").split("±")[0].strip() for t in texts]


def visible_rows(page, table: str) -> list[str]:
    return page.locator(f"{table} tbody tr:visible td.model").evaluate_all(
        "cells => cells.map(c => c.querySelector('bdi').innerText.trim())"
    )


@pytest.mark.parametrize("width", WIDTHS)
def test_layout_at_desktop_and_phone_width(chromium, page_url, screenshots, width):
    page = open_page(chromium, page_url, width)
    try:
        page.locator("details").evaluate_all("els => els.forEach(d => d.open = true)")  # check what they hold, too
        third = page.locator("table.lb.main th:nth-child(3)").evaluate_all("ths => ths.map(t => t.dataset.key)")
        assert set(third) == {"tts"}
        # Every ranking's TTS column (header and cells) is in view without scrolling its table; model names never break
        # inside a word; the charts are drawn at their natural size, never scaled down.
        assert layout_problems(page, unbreakable="td.model", in_view=TTS_CELLS, unscaled="svg.chart") == []
        if width <= 400:
            assert page.evaluate("document.querySelector('.table-scroll').scrollWidth") > page.evaluate(
                "document.querySelector('.table-scroll').clientWidth"
            )  # the wide table scrolls inside its own box instead
        shot = screenshots / f"leaderboard-{width}px.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000
        assert page.errors == []
    finally:
        page.close()


def test_sorting_and_the_source_filter(page):
    main = "#board-1-main"
    by_rank = column(page, main, 1)
    assert by_rank[0].startswith("KinderMM-Cap-3B") and len(by_rank) == 8
    headers = page.locator(f"{main} thead th").all_inner_texts()
    assert [h.strip(" ↕▲▼") for h in headers] == [
        "#", "Model", "TTS", "Judge score", "Toy precision", "Size", "Weights", "Source"
    ]  # fmt: skip

    page.click(f"{main} thead th:nth-child(2) button")  # Model: A-Z
    by_name = column(page, main, 1)
    assert by_name != by_rank
    assert by_name == sorted(by_rank, key=str.lower) or by_name == sorted(by_rank)
    assert page.get_attribute(f"{main} thead th:nth-child(2)", "aria-sort") == "ascending"

    page.click(f"{main} thead th:nth-child(3) button")  # TTS: best first, then reversed
    tts = [float(v) for v in column(page, main, 2)]
    assert tts == sorted(tts, reverse=True)
    page.click(f"{main} thead th:nth-child(3) button")
    assert [float(v) for v in column(page, main, 2)] == sorted(tts)

    page.click(f"{main} thead th:nth-child(4) button")  # judge score: missing values stay last
    judge = column(page, main, 3)
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
    assert page.errors == []


def test_search_and_size_filter(page):
    main = "#board-1-main"
    page.fill("#search", "qwen2.5-vl-3b")  # the name, or the variant (KinderMM-Cap-3B is Qwen2.5-VL-3B + SFT + RSRS)
    assert sorted(visible_rows(page, main)) == [
        "KinderMM-Cap-3B", "Qwen2.5-VL-3B", "Qwen2.5-VL-3B+SFT", "Qwen2.5-VL-3B+SFT+GRPO"
    ]  # fmt: skip
    assert visible_rows(page, "#board-2-main") == [] and page.is_visible("#board-2 p.empty")
    assert page.inner_text("#shown-count") == "4 of 10 rows"
    assert page.locator("#board-1-scatter g.point:visible").count() == 3  # chart marks follow the filter (3 judged)
    page.fill("#search", "Qwen/Qwen2.5-VL-7B-Instruct")  # the checkpoint the baseline script runs (model facts)
    assert visible_rows(page, main) == ["Qwen2.5-VL-7B"]
    page.fill("#search", "")

    page.select_option("#size-filter", "20-40")
    assert sorted(visible_rows(page, main)) == ["Gemma3-27B", "Qwen2.5-VL-32B"]
    assert visible_rows(page, "#board-2-main") == []
    page.select_option("#size-filter", "unknown")
    assert visible_rows(page, main) == [] and visible_rows(page, "#board-2-main") == ["system-a", "system-b"]
    page.select_option("#size-filter", "lt4")
    page.fill("#search", "+sft")  # KinderMM-Cap-3B is "Qwen2.5-VL-3B + SFT + RSRS": spaced
    assert sorted(visible_rows(page, main)) == ["Qwen2.5-VL-3B+SFT", "Qwen2.5-VL-3B+SFT+GRPO"]
    assert sorted(visible_rows(page, "#board-1-fine")) == ["Qwen2.5-VL-3B+SFT", "Qwen2.5-VL-3B+SFT+GRPO"]
    page.select_option("#size-filter", "all")
    page.fill("#search", "")
    assert len(visible_rows(page, main)) == 8 and page.inner_text("#shown-count") == ""
    assert not page.is_visible("#board-2 p.empty")
    assert page.errors == []


def test_bibtex_copy_buttons_select_the_entry(page):
    entries = page.locator("#cite pre").all_inner_texts()
    assert len(entries) == 2 and entries[0].startswith("@misc{li-ecac,") and entries[1].startswith("@misc{ecac-bench,")
    assert not any(word in text for text in entries for word in ("year", "journal", "booktitle"))
    for i in range(2):
        page.locator("#cite button.copy").nth(i).click()
        page.wait_for_function(f"document.querySelectorAll('#cite .copy-status')[{i}].textContent !== ''")
        assert page.evaluate("window.getSelection().toString()") == entries[i]
    assert page.errors == []


def test_model_links_and_the_measured_ci(page):
    link = page.locator("#board-1-main a.model-link", has_text="Qwen2.5-VL-7B")
    assert link.get_attribute("href") == "https://huggingface.co/Qwen/Qwen2.5-VL-7B-Instruct"
    assert link.get_attribute("rel") == "noopener noreferrer nofollow"
    tts = page.locator("#board-2-main tbody tr").first.locator("td").nth(2)
    assert "±" in tts.inner_text() and tts.get_attribute("title").startswith("from runs/system-a.json; 95% CI ")
    reported = page.locator("#board-1-main tbody tr").first.locator("td").nth(2)
    assert reported.get_attribute("title") == "from Table III; reported: no CI (the paper gives none)"


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
