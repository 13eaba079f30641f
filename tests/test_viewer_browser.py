"""The caption viewer in a real browser (Debian's Chromium through Playwright, from file://), at 1400 and 400 px.

Skips (and `make test` says so) when no Chromium is found, unless ECAC_REQUIRE_BROWSER=1; see tests/browser.py.
"""

from __future__ import annotations

import json

import pytest
from browser import launched_chromium, open_page

from ecac_bench import SAMPLE_PREDICTIONS
from ecac_bench.cli import main

WIDTHS = (1400, 400)
MIN_FONT_PX = 11

# Layout checks run in the page. Each returns what it found wrong (an empty list when the page is fine).
OVERFLOW = "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
SMALL_TEXT = """(min) => {
  const out = [];
  for (const el of document.body.querySelectorAll('*')) {
    if (!el.getClientRects().length || ['SCRIPT', 'STYLE', 'OPTION'].includes(el.tagName)) continue;
    const hasText = [...el.childNodes].some(n => n.nodeType === 3 && n.textContent.trim())
      || ['INPUT', 'SELECT', 'BUTTON'].includes(el.tagName);
    const size = parseFloat(getComputedStyle(el).fontSize);
    if (hasText && size < min) out.push(el.tagName + ' ' + size + 'px: ' + el.textContent.trim().slice(0, 40));
  }
  return out;
}"""
# A Latin word (letters and digits) laid out on more than one line was broken mid-word. Text inside an element that
# scrolls sideways (the signature) never wraps, so is not looked at.
BROKEN_WORDS = """() => {
  const out = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const parent = node.parentElement;
    if (!parent || !parent.getClientRects().length || parent.closest('script, style, pre')) continue;
    for (const m of node.textContent.matchAll(/[A-Za-z0-9]{2,}/g)) {
      const range = document.createRange();
      range.setStart(node, m.index);
      range.setEnd(node, m.index + m[0].length);
      const tops = new Set([...range.getClientRects()].filter(r => r.width > 0).map(r => Math.round(r.top)));
      if (tops.size > 1) out.push(m[0]);
    }
  }
  return out;
}"""


@pytest.fixture(scope="module")
def pages(tmp_path_factory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("viewer_browser")
    files = []
    for name in ("system-a", "system-b"):
        files.append(folder / f"{name}.jsonl")
        argv = ["score", "--predictions", str(SAMPLE_PREDICTIONS[name]), "--per-image", str(files[-1])]
        assert main([*argv, "--n-boot", "0"]) == 0
    one, two = folder / "one.html", folder / "two.html"
    assert main(["view", str(files[0]), "--out", str(one)]) == 0
    assert main(["view", str(files[0]), str(files[1]), "--out", str(two)]) == 0
    rows = [[json.loads(line) for line in f.read_text(encoding="utf-8").splitlines()[1:]] for f in files]
    return {"one": one.as_uri(), "two": two.as_uri(), "rows": rows}


@pytest.fixture(scope="module")
def browser():
    with launched_chromium() as launched:
        yield launched


def visible(page) -> list[str]:
    return page.locator("article.card:not([hidden]) h3").all_inner_texts()


def layout_problems(page) -> dict[str, object]:
    return {
        "overflow_px": page.evaluate(OVERFLOW),
        "small_text": page.evaluate(SMALL_TEXT, MIN_FONT_PX),
        "broken_words": page.evaluate(BROKEN_WORDS),
    }


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("which", ["one", "two"])
def test_layout_at_desktop_and_phone_widths(browser, pages, which, width, tmp_path) -> None:
    page = open_page(browser, pages[which], width)
    try:
        page.click("details summary")  # the signature open too: it scrolls inside its box, never the page
        page.select_option("#sort", "rate:0:1")
        assert layout_problems(page) == {"overflow_px": 0, "small_text": [], "broken_words": []}
        shot = tmp_path / f"viewer-{which}-{width}.png"
        page.screenshot(path=str(shot), full_page=False)
        assert shot.stat().st_size > 10_000
        assert page.errors == []
    finally:
        page.close()


def test_layout_checks_catch_what_they_look_for(browser, tmp_path) -> None:
    """The three checks above can fail: a page that overflows, has 8 px text and breaks a word mid-word."""
    bad = tmp_path / "bad.html"
    bad.write_text(
        '<!DOCTYPE html><meta name="viewport" content="width=device-width"><body>'
        '<div style="width: 1200px">wide</div><p style="font-size: 8px">tiny</p>'
        '<p style="width: 60px; word-break: break-all">extraordinarily</p></body>'
    )
    page = open_page(browser, bad.as_uri(), 400)
    try:
        found = layout_problems(page)
        assert found["overflow_px"] > 0 and found["small_text"] == ["P 8px: tiny"]
        assert found["broken_words"] == ["extraordinarily"]
    finally:
        page.close()


def test_filters_search_sort_and_paging(browser, pages) -> None:
    rows_a, rows_b = pages["rows"]
    page = open_page(browser, pages["two"], 1400)
    try:
        assert len(visible(page)) == 50 and page.is_visible("#more")  # a page of 50, then "Show more"
        page.click("#more")
        assert len(visible(page)) == 60 and not page.is_visible("#more")

        page.fill("#q", "ecac-sample-0002")
        assert visible(page) == ["ecac-sample-0002"]
        page.fill("#q", "ＭＡＧＮＥＴＩＣ tiles")  # search folds width and case like the matching rule
        expected = [r["id"] for r in rows_a if any("magnetic tiles" in t["name"] for t in r["toys"])]
        assert expected and sorted(visible(page)) == sorted(expected)
        page.fill("#q", "")

        page.select_option("#f-category", "outdoor")
        assert sorted(visible(page)) == sorted(r["id"] for r in rows_a if r["category"] == "outdoor")
        page.select_option("#f-category", "")

        page.select_option("#f-level", "high")
        page.select_option("#f-toys", "missed:0")
        expected = [r["id"] for r in rows_a if any(t["level"] == "high" and t["named"] is False for t in r["toys"])]
        assert expected and sorted(visible(page)) == sorted(expected)
        page.select_option("#f-level", "")
        page.select_option("#f-toys", "nm:0:1")  # named by A, missed by B
        expected = [
            a["id"] for a, b in zip(rows_a, rows_b)
            if any(ta["named"] and tb["named"] is False for ta, tb in zip(a["toys"], b["toys"]))
        ]  # fmt: skip
        assert expected and sorted(visible(page)) == sorted(expected)
        page.select_option("#f-toys", "allnamed:1")
        expected = [b["id"] for b in rows_b if b["toys"] and all(t["named"] for t in b["toys"])]
        assert sorted(visible(page)) == sorted(expected)
        page.select_option("#f-toys", "")

        rate = {r["id"]: r["rate"] for r in rows_a}
        page.select_option("#sort", "rate:0:1")
        page.click("#more")
        order = visible(page)
        rated = [rate[i] for i in order if rate[i] is not None]
        assert rated == sorted(rated) and all(rate[i] is None for i in order[len(rated) :])  # no rate: last
        page.select_option("#sort", "diff:-1")
        gains = [b["rate"] - a["rate"] for a, b in zip(rows_a, rows_b) if a["rate"] is not None]
        first = next(
            a["id"] for a, b in zip(rows_a, rows_b) if a["rate"] is not None and b["rate"] - a["rate"] == max(gains)
        )
        assert visible(page)[0] == first
        assert "showing 50 of 60 images" in page.inner_text("#count")
        assert page.errors == []
    finally:
        page.close()
