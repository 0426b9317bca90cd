"""Which Chromium the browser tests drive, and how: none is ever downloaded here."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

NO_CHROMIUM = (
    "no Chromium found: `apt-get install chromium` or `python -m playwright install chromium` "
    "(or set PLAYWRIGHT_CHROMIUM_EXECUTABLE)"
)

# Headless, and nothing of Chromium's own talks to the network: test traffic stays on
# loopback (the pages are on 127.0.0.1; any name is refused by the resolver rule).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-proxy-server",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost",
]


def playwright_chromium() -> list[str]:
    """Chromium builds `python -m playwright install chromium` put in its cache."""
    cache = Path(os.environ.get("PLAYWRIGHT_BROWSERS_PATH") or Path.home() / ".cache" / "ms-playwright")
    return sorted((str(p) for p in cache.glob("chromium-*/chrome-linux*/chrome")), reverse=True)


def chromium_executable() -> str | None:
    """PLAYWRIGHT_CHROMIUM_EXECUTABLE, else the system's Chromium, else one Playwright installed."""
    named = os.environ.get("PLAYWRIGHT_CHROMIUM_EXECUTABLE")
    candidates = [named] if named else []
    candidates += [shutil.which("chromium"), shutil.which("chromium-browser"), *playwright_chromium()]
    return next((c for c in candidates if c and Path(c).is_file() and os.access(c, os.X_OK)), None)


CHROMIUM = chromium_executable()
