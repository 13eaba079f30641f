"""The shared layout checker (tests/browser.py ``layout_problems``) can fail: each of its checks finds the problem it
looks for on a small hand-written page, and a clean page gives none. Skips like every browser test without Chromium."""

from __future__ import annotations

import pytest
from browser import launched_chromium, layout_problems, open_page

HEAD = '<!DOCTYPE html><meta charset="utf-8"><meta name="viewport" content="width=device-width"><body>'
# The page-specific checks' targets: a table in a box that scrolls sideways, a model name, a chart of viewBox 300 wide.
SCROLL_BOX = (
    '<div style="overflow-x: auto; width: 200px"><table style="width: {width}"><tr>'
    '<td style="width: 150px">name</td><td class="key">{key}</td></tr></table></div>'
)
OPTIONS = {"unbreakable": "td.model", "in_view": "td.key", "unscaled": "svg.chart"}
CLEAN = (
    HEAD
    + '<p style="font-size: 11px">small but enough</p><input value="typed">'
    + '<p style="width: 90px">long-hyphenated-words may break after hyphens</p>'
    + '<p style="width: 70px">二十一个中文字符可以在任何两个字之间换行</p>'
    + SCROLL_BOX.format(width="180px", key="0.5")
    + '<table><tr><td class="model">Qwen2.5-VL-3B</td></tr></table>'
    + '<svg class="chart" viewBox="0 0 300 100" width="300"><text x="0" y="20" font-size="12">axis</text></svg>'
)
BROKEN = (
    HEAD
    + '<div style="width: 1200px">wide</div>'
    + '<p style="font-size: 8px">tiny</p><input style="font-size: 9px" value="typed">'
    + '<p style="width: 60px; word-break: break-all">extraordinarily</p>'
    + SCROLL_BOX.format(width="600px", key="0.5")
    + '<table style="width: 60px"><tr><td class="model">Qwen2.5-VL-3B-Instruct</td></tr></table>'
    + '<svg class="chart" viewBox="0 0 300 100" width="150"><text x="0" y="20" font-size="12">axis</text></svg>'
)


@pytest.fixture(scope="module")
def browser():
    with launched_chromium() as launched:
        yield launched


def problems(browser, tmp_path, html: str, **options) -> list[str]:
    path = tmp_path / "page.html"
    path.write_text(html, encoding="utf-8")
    page = open_page(browser, path.as_uri(), 400)
    try:
        assert page.errors == []
        return layout_problems(page, **options)
    finally:
        page.close()


def test_a_clean_page_has_no_problem(browser, tmp_path) -> None:
    assert problems(browser, tmp_path, CLEAN, **OPTIONS) == []


def test_every_check_finds_its_problem(browser, tmp_path) -> None:
    found = problems(browser, tmp_path, BROKEN, **OPTIONS)
    assert found[0].startswith("the page scrolls sideways: 1208 px wide in 400 px"), found
    assert "text below 11 px: P 8px: tiny" in found
    assert "text below 11 px: INPUT 9px: typed" in found
    broken = [p.removeprefix("word broken inside: ") for p in found if p.startswith("word broken inside: ")]
    assert len(broken) == 1 and broken[0].replace(" / ", "") == "extraordinarily", found
    assert "broken over two lines (td.model): Qwen2.5-VL-3B-Instruct" in found
    assert "not in view without scrolling sideways: TD 0.5" in found
    assert "drawn below its natural size: svg at 0.5x" in found
    assert "text below 11 px: text 6px: axis" in found  # SVG text measured on screen: 12 px scaled by 0.5
    assert len(found) == 8, found


def test_a_break_after_a_hyphen_is_allowed_except_where_unbreakable(browser, tmp_path) -> None:
    html = HEAD + '<p style="width: 90px">long-hyphenated-words</p>'
    assert problems(browser, tmp_path, html) == []
    assert problems(browser, tmp_path, html, unbreakable="p") == ["broken over two lines (p): long-hyphenated-words"]


def test_the_font_floor_is_an_option(browser, tmp_path) -> None:
    html = HEAD + '<p style="font-size: 11px">eleven</p>'
    assert problems(browser, tmp_path, html) == []
    assert problems(browser, tmp_path, html, min_font_px=12) == ["text below 12 px: P 11px: eleven"]


def test_an_option_that_matches_nothing_is_a_problem(browser, tmp_path) -> None:
    assert problems(browser, tmp_path, HEAD + "<p>text</p>", in_view="td.key", unscaled="svg.chart") == [
        "nothing matches td.key",
        "nothing matches svg.chart",
    ]
