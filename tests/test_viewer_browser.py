"""The caption viewer in a real browser (Debian's Chromium through Playwright, from file://), at 1400 and 400 px.

Skips (and `make test` says so) when no Chromium is found, unless ECAC_REQUIRE_BROWSER=1; see tests/browser.py.
"""

from __future__ import annotations

import json

import pytest
from browser import launched_chromium, layout_problems, open_page

from ecac_bench import SAMPLE_PREDICTIONS
from ecac_bench.cli import main

WIDTHS = (1400, 400)


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


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("which", ["one", "two"])
def test_layout_at_desktop_and_phone_widths(browser, pages, which, width, tmp_path) -> None:
    page = open_page(browser, pages[which], width)
    try:
        page.click("details summary")  # the signature open too: it scrolls inside its box, never the page
        page.select_option("#sort", "rate:0:1")
        assert layout_problems(page) == []
        shot = tmp_path / f"viewer-{which}-{width}.png"
        page.screenshot(path=str(shot), full_page=False)
        assert shot.stat().st_size > 10_000
        assert page.errors == []
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
