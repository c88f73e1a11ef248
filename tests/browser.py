"""Headless Debian chromium for the browser tests, launched once per test module.

Launching Playwright's driver and the browser costs about a CPU-second; a module's tests (each
backend's server, each test) share one browser, and each test gets fresh contexts of its own
(cookies, viewport), closed when it ends. Not once per run: while Playwright's sync API is started
it marks an asyncio loop as running in the main thread, which ``asyncio.run`` in a later test
would refuse. Fixtures: ``browser`` (a test's view of the module's browser); modules import it
(``from tests.browser import browser, chromium  # noqa: F401``) or get it from a conftest.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
NO_CHROMIUM = "Debian's chromium is not installed"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """The module's headless chromium (a Playwright ``Browser``)."""
    if CHROMIUM is None:
        pytest.skip(NO_CHROMIUM)
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def browser(chromium) -> Iterator[Any]:
    """The module's browser for one test: the contexts (and pages) it opens are closed after."""
    before = set(chromium.contexts)
    yield chromium
    for context in chromium.contexts:
        if context not in before:
            context.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    """Folder for the browser tests' screenshots: $CELLTRIAL_SCREENSHOT_DIR, else a temporary
    one."""
    target = os.environ.get("CELLTRIAL_SCREENSHOT_DIR")
    path = Path(target) if target else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path
