"""Finding a real Chromium for the browser tests (the leaderboard, the caption viewer), and the one layout checker they
share (:func:`layout_problems`).

Where: ``$ECAC_CHROMIUM`` if set, else the first of chromium / chromium-browser / google-chrome on PATH. Without one the
browser tests skip, and `make test` says so at the end of its output; with ``ECAC_REQUIRE_BROWSER=1`` (CI sets it)
a missing browser is a failure instead.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

ENV_CHROMIUM = "ECAC_CHROMIUM"
ENV_REQUIRE = "ECAC_REQUIRE_BROWSER"
CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
HOW_TO_ENABLE = (
    f"install Chromium (Debian: apt-get install -y chromium) or set {ENV_CHROMIUM}=/path/to/chromium; "
    f"CI requires the browser tests ({ENV_REQUIRE}=1)"
)
# Headless as root on a machine with a closed network (see .library/env/machines/python.md).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-quic",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
]
skipped: list[str] = []  # read by conftest's terminal summary


def chromium_path() -> Path | None:
    configured = os.environ.get(ENV_CHROMIUM)
    if configured:
        return Path(configured) if Path(configured).is_file() else None
    found = next((shutil.which(name) for name in CANDIDATES if shutil.which(name)), None)
    return Path(found) if found else None


def require_browser():
    """Playwright's ``sync_playwright`` and the Chromium to launch, or a skip (a failure when required)."""
    required = os.environ.get(ENV_REQUIRE) == "1"
    path = chromium_path()
    if path is None:
        where = os.environ.get(ENV_CHROMIUM) or " / ".join(CANDIDATES) + " on PATH"
        if required:
            pytest.fail(f"{ENV_REQUIRE}=1 but no Chromium was found ({where}): {HOW_TO_ENABLE}")
        skipped.append(f"no Chromium found ({where})")
        pytest.skip(f"no Chromium found: {HOW_TO_ENABLE}")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        if required:
            raise
        skipped.append("playwright is not installed")
        pytest.skip("playwright not installed (make setup-dev installs it)")
    return sync_playwright, path


@contextmanager
def launched_chromium() -> Iterator:
    """One headless Chromium for a module's tests (or the skip / failure :func:`require_browser` decides)."""
    sync_playwright, path = require_browser()
    with sync_playwright() as pw:
        launched = pw.chromium.launch(executable_path=str(path), args=CHROMIUM_ARGS, headless=True)
        try:
            yield launched
        finally:
            launched.close()


def open_page(browser, url: str, width: int):
    """``url`` in a new page ``width`` px wide. ``page.errors`` collects what the tests check is empty: console
    errors, uncaught exceptions, dialogs, and any request that is not to a file or a data URI (the pages are
    self-contained: no CDN, nothing fetched)."""
    page = browser.new_page(viewport={"width": width, "height": 900})
    page.errors = []
    page.on("console", lambda msg: page.errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: page.errors.append(str(exc)))
    page.on("dialog", lambda dialog: page.errors.append(f"dialog: {dialog.message}"))
    page.on("request", lambda req: None if req.url.startswith(("file:", "data:")) else page.errors.append(req.url))
    page.goto(url)
    return page


# Every layout check, run in the page; it returns one line per problem found (none: the page is fine). Words are runs of
# characters that are neither white space nor CJK (a line may break between any two CJK characters); a line may break
# after a hyphen, a slash or a dash, as browsers do, never elsewhere inside a word. SVG text never wraps; its size is
# measured through its transform to the screen.
_LAYOUT_PROBLEMS = """(opts) => {
  const out = [];
  const root = document.documentElement;
  const scrollWidth = document.scrollingElement.scrollWidth;
  if (scrollWidth > root.clientWidth)
    out.push(`the page scrolls sideways: ${scrollWidth} px wide in ${root.clientWidth} px`);

  const word = /[^\\s\\u3000-\\u9fff\\uac00-\\ud7af\\uff00-\\uffef]+/g;
  const breakAfter = "-/\\u2010\\u2013\\u2014";
  const shown = el => el.checkVisibility({checkOpacity: true, checkVisibilityCSS: true});
  const small = (el, size, text) =>
    out.push(`text below ${opts.minFontPx} px: ${el.tagName} ${+size.toFixed(2)}px: ${text.trim().slice(0, 40)}`);
  function lineTop(node, start, end) {
    const r = document.createRange();
    r.setStart(node, start); r.setEnd(node, end);
    const rects = Array.from(r.getClientRects()).filter(x => x.width > 0);
    return rects.length ? rects[0].top : null;
  }
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const el = node.parentElement;
    if (!node.textContent.trim() || !el || el.closest("script, style, title, option") || !shown(el)) continue;
    const whole = document.createRange();
    whole.selectNodeContents(node);
    if (whole.getClientRects().length === 0) continue;
    let size = parseFloat(getComputedStyle(el).fontSize);
    if (el instanceof SVGElement) {
      const m = el.getScreenCTM();
      size *= Math.hypot(m.a, m.b);
    }
    if (size < opts.minFontPx - 0.01) small(el, size, node.textContent);
    if (el instanceof SVGElement) continue;
    const unbreakable = opts.unbreakable !== null && el.closest(opts.unbreakable) !== null;
    for (const m of node.textContent.matchAll(word)) {
      const start = m.index, text = m[0];
      const r = document.createRange();
      r.setStart(node, start); r.setEnd(node, start + text.length);
      const tops = Array.from(r.getClientRects()).filter(x => x.width > 0).map(x => x.top);
      if (tops.length < 2 || Math.max(...tops) - Math.min(...tops) < 2) continue;
      const first = lineTop(node, start, start + 1);
      for (let i = 1; i < text.length; i++) {
        const top = lineTop(node, start + i, start + i + 1);
        if (top === null || first === null || Math.abs(top - first) < 2) continue;
        if (unbreakable) out.push(`broken over two lines (${opts.unbreakable}): ${text}`);
        else if (!breakAfter.includes(text[i - 1]))
          out.push(`word broken inside: ${text.slice(0, i)} / ${text.slice(i)}`);
        break;
      }
    }
  }
  // Form controls show text that is no text node of theirs (a value, a placeholder, the chosen option).
  for (const el of document.body.querySelectorAll("input, select, textarea")) {
    const size = parseFloat(getComputedStyle(el).fontSize);
    if (shown(el) && size < opts.minFontPx - 0.01) small(el, size, el.value || el.placeholder || "");
  }

  const matched = selector => {
    const els = Array.from(document.querySelectorAll(selector));
    if (!els.length) out.push(`nothing matches ${selector}`);
    return els;
  };
  if (opts.inView !== null) {
    for (const el of matched(opts.inView)) {
      let box = {left: 0, right: root.clientWidth};
      for (let a = el.parentElement; a && a !== document.body; a = a.parentElement) {
        if (getComputedStyle(a).overflowX !== "visible") { box = a.getBoundingClientRect(); break; }
      }
      const r = el.getBoundingClientRect();
      if (r.left < Math.max(box.left, 0) - 0.5 || r.right > Math.min(box.right, root.clientWidth) + 0.5)
        out.push(`not in view without scrolling sideways: ${el.tagName} ${el.innerText.trim().slice(0, 40)}`);
    }
  }
  if (opts.unscaled !== null) {
    for (const svg of matched(opts.unscaled)) {
      const scale = svg.getBoundingClientRect().width / svg.viewBox.baseVal.width;
      if (!(scale >= 0.999))
        out.push(`drawn below its natural size: ${svg.id || svg.tagName} at ${+scale.toFixed(3)}x`);
    }
  }
  return out;
}"""


def layout_problems(
    page,
    *,
    min_font_px: float = 11.0,
    unbreakable: str | None = None,
    in_view: str | None = None,
    unscaled: str | None = None,
) -> list[str]:
    """What is wrong with the layout of ``page`` as shown now, one line per problem (an empty list: nothing).

    Always checked: the page never scrolls sideways (wide content scrolls inside its own box); no visible text (form
    controls included) is rendered below ``min_font_px``; no word is broken over two lines except after a hyphen, a
    slash or a dash. The options name what only some pages have (CSS selectors; each must match something):
    ``unbreakable``, text never broken inside a word, not even after a hyphen (model names); ``in_view``, elements
    fully in view without scrolling anything sideways (their scroll box's edges, the window's); ``unscaled``, SVGs never
    drawn below the size of their viewBox (charts, whose text and marks would shrink)."""
    opts = {"minFontPx": min_font_px, "unbreakable": unbreakable, "inView": in_view, "unscaled": unscaled}
    return page.evaluate(_LAYOUT_PROBLEMS, opts)
