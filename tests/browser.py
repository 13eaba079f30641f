"""Finding a real Chromium for the browser tests (the leaderboard, the caption viewer).

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
