"""The HTTP session every provider call goes through: our CA, the tenant's proxy, a timeout.

The proxy is the tenant's choice: each connection to it resolves its host once, checks every
address against the operator's outbound rule (`fleetmail_runtime.outbound`) and connects to a
checked address (TLS to an `https://` proxy keeps its name). A refused proxy ends the call as
a `ConfigurationError` of `proxy_url` that names the rule.
"""

from __future__ import annotations

import functools
import socket
import time
from pathlib import Path
from typing import Any

import requests
from fleetmail_runtime.outbound import DestinationRefused, OutboundPolicy
from requests.adapters import HTTPAdapter
from urllib3 import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.exceptions import NameResolutionError, NewConnectionError
from urllib3.util.connection import create_connection

from ..errors import ConfigurationError

PROXY_SETTING = "proxy_url"

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


def _checked(base: type[HTTPConnection], policy: OutboundPolicy) -> type[HTTPConnection]:
    class CheckedConnection(base):  # type: ignore[valid-type,misc]
        """Connects to a checked address of its host; the name stays for TLS."""

        def _new_conn(self) -> socket.socket:
            try:
                addresses = policy.resolve_allowed_sync(self._dns_host, self.port)
            except socket.gaierror as exc:
                raise NameResolutionError(self.host, self, exc) from exc
            failure: OSError | None = None
            for address in addresses:
                try:
                    return create_connection(
                        (address, self.port),
                        self.timeout,
                        source_address=self.source_address,
                        socket_options=self.socket_options,
                    )
                except OSError as exc:
                    failure = exc
            raise NewConnectionError(self, f"Failed to establish a new connection: {failure}")

    return CheckedConnection


@functools.cache
def checked_pools(policy: OutboundPolicy) -> dict[str, type[HTTPConnectionPool]]:
    """urllib3 connection pools whose connections only go where `policy` allows."""

    class CheckedHTTPPool(HTTPConnectionPool):
        ConnectionCls = _checked(HTTPConnection, policy)

    class CheckedHTTPSPool(HTTPSConnectionPool):
        ConnectionCls = _checked(HTTPSConnection, policy)  # type: ignore[assignment]

    return {"http": CheckedHTTPPool, "https": CheckedHTTPSPool}


class CheckedProxyAdapter(HTTPAdapter):
    """Every connection of a proxied request goes to the proxy: those are the ones checked."""

    def __init__(self, policy: OutboundPolicy) -> None:
        self._checked_pools = checked_pools(policy)
        super().__init__()

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        fresh = proxy not in self.proxy_manager
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if fresh:
            manager.pool_classes_by_scheme = self._checked_pools
        return manager


def provider_session(
    ca_bundle: Path | None,
    proxy_url: str | None,
    timeout_s: float,
    throttle: ThrottleClock | None = None,
    *,
    outbound: OutboundPolicy,
) -> requests.Session:
    session = requests.Session()
    # trust_env off: REQUESTS_CA_BUNDLE would override `verify`, and the proxy is the
    # tenant's setting, not the host's environment.
    session.trust_env = False
    session.verify = str(ca_bundle) if ca_bundle else True
    if proxy_url:
        session.proxies = {"http": proxy_url, "https": proxy_url}
        adapter = CheckedProxyAdapter(outbound)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
    original = session.request

    def request_with_timeout(method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", timeout_s)
        try:
            response = original(method, url, *args, **kwargs)
        except DestinationRefused as exc:
            raise ConfigurationError(
                f"the tenant's proxy is not allowed: {exc}", setting=PROXY_SETTING
            ) from None
        if throttle is not None:
            throttle.observe(url, response)
        return response

    session.request = request_with_timeout  # type: ignore[method-assign,assignment]
    return session
