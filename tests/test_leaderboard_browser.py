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
from browser import launched_chromium, open_page, require_browser

from ecac_bench.leaderboard import build_site

REPO = Path(__file__).resolve().parents[1]
WIDTHS = (1400, 400)
MIN_FONT_PX = 11.0

# Every visible text node: its rendered font size (SVG: times the scale of its transform to the screen) and each word
# that the layout breaks over two lines at a place other than after a hyphen or a slash. Words are runs of characters
# that are neither white space nor CJK (a line may break between any two CJK characters).
LAYOUT_PROBLEMS = """() => {
  const small = [], broken = [], modelBreaks = [];
  const word = /[^\\s\\u3000-\\u9fff\\uac00-\\ud7af\\uff00-\\uffef]+/g;
  const allowed = "-/\\u2010\\u2013\\u2014";
  function lineTop(node, start, end) {
    const r = document.createRange();
    r.setStart(node, start); r.setEnd(node, end);
    const rects = Array.from(r.getClientRects()).filter(x => x.width > 0);
    return rects.length ? rects[0].top : null;
  }
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const el = node.parentElement;
    if (!node.textContent.trim() || !el || el.closest("script, style, title, option")) continue;
    if (!el.checkVisibility({checkOpacity: true, checkVisibilityCSS: true})) continue;
    const whole = document.createRange();
    whole.selectNodeContents(node);
    if (whole.getClientRects().length === 0) continue;
    let size = parseFloat(getComputedStyle(el).fontSize);
    if (el instanceof SVGElement) {
      const m = el.getScreenCTM();
      size *= Math.hypot(m.a, m.b);
    }
    if (size < MIN_FONT_PX - 0.01) small.push(size.toFixed(2) + "px: " + node.textContent.trim().slice(0, 40));
    if (el instanceof SVGElement) continue;  // SVG text never wraps
    for (const m of node.textContent.matchAll(word)) {
      const start = m.index, text = m[0];
      const r = document.createRange();
      r.setStart(node, start); r.setEnd(node, start + text.length);
      const tops = Array.from(r.getClientRects()).filter(x => x.width > 0).map(x => x.top);
      if (tops.length < 2 || Math.max(...tops) - Math.min(...tops) < 2) continue;
      const first = lineTop(node, start, start + 1);
      for (let i = 1; i < text.length; i++) {
        const top = lineTop(node, start + i, start + i + 1);
        if (top !== null && first !== null && Math.abs(top - first) >= 2) {
          if (el.closest("td.model")) modelBreaks.push(text);
          else if (!allowed.includes(text[i - 1])) broken.push(text.slice(0, i) + " / " + text.slice(i));
          break;
        }
      }
    }
  }
  return {small, broken, modelBreaks};
}""".replace("MIN_FONT_PX", str(MIN_FONT_PX))


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
        overflow = page.evaluate("[document.scrollingElement.scrollWidth, window.innerWidth]")
        assert overflow[0] <= overflow[1], f"the page scrolls sideways at {width} px: {overflow}"
        problems = page.evaluate(LAYOUT_PROBLEMS)
        assert problems["small"] == [], f"text below {MIN_FONT_PX} px at {width} px"
        assert problems["broken"] == [], f"words broken inside at {width} px"
        assert problems["modelBreaks"] == [], f"model names broken inside a word at {width} px"
        # the charts are drawn at their natural size: never scaled down
        scales = page.locator("svg.chart").evaluate_all(
            "svgs => svgs.map(s => s.getBoundingClientRect().width / s.viewBox.baseVal.width)"
        )
        assert scales and min(scales) >= 0.999
        if width <= 400:
            # Every ranking's TTS column (header and cells) is in view without scrolling its table.
            cut = page.evaluate("""() => Array.from(document.querySelectorAll("table.lb.main")).flatMap(t => {
                const box = t.parentElement.getBoundingClientRect();
                const col = Array.from(t.tHead.rows[0].cells).findIndex(c => c.dataset.key === "tts");
                return Array.from(t.rows).map(r => r.cells[col]).filter(c => {
                  const r = c.getBoundingClientRect();
                  return r.right > box.right + 0.5 || r.left < box.left;
                }).map(c => t.id + ": " + c.innerText);
            })""")
            assert cut == []
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
