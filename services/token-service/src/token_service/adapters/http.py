"""The HTTP session every provider call goes through: our CA, the tenant's proxy, a timeout."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import requests

MSAL_DEFAULT_THROTTLE_S = 60.0


class ThrottleClock:
    """When each provider URL may be called again after a 429/5xx.

    MSAL replays such an answer without calling the server until Retry-After has passed
    (60 s when the server gave none); callers are told the same.
    """

    def __init__(self) -> None:
        self._until: dict[str, float] = {}

    def observe(self, url: str, response: requests.Response) -> None:
        if response.status_code == 429 or response.status_code >= 500:
            header = response.headers.get("Retry-After", "")
            delay = float(header) if header.isdigit() else MSAL_DEFAULT_THROTTLE_S
            self._until[url.split("?")[0]] = time.monotonic() + min(delay, 3600)

    def retry_after(self, url_prefix: str) -> float:
        now = time.monotonic()
        waits = [until - now for url, until in self._until.items() if url.startswith(url_prefix)]
        return max([1.0, *waits])


def provider_session(
    ca_bundle: Path | None, proxy_url: str | None, timeout_s: float, throttle: ThrottleClock | None = None
) -> requests.Session:
    session = requests.Session()
    # trust_env off: REQUESTS_CA_BUNDLE would override `verify`, and the proxy is the
    # tenant's setting, not the host's environment.
    session.trust_env = False
    session.verify = str(ca_bundle) if ca_bundle else True
    if proxy_url:
        session.proxies = {"http": proxy_url, "https": proxy_url}
    original = session.request

    def request_with_timeout(method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", timeout_s)
        response = original(method, url, *args, **kwargs)
        if throttle is not None:
            throttle.observe(url, response)
        return response

    session.request = request_with_timeout  # type: ignore[method-assign,assignment]
    return session
