"""A person in a real browser: Debian's headless Chromium driven by Playwright (no browser
download; `.ci/test` installs `chromium`). Screenshots go to test-artifacts/."""
from __future__ import annotations

import os

from tests.support.env import ROOT

ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def browser_available() -> bool:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return False
    return os.access(CHROMIUM, os.X_OK)
