"""The HTTP session every provider call goes through: our CA, the proxy, a timeout.

The proxy is the tenant's (`proxy_url`), else the service's (`FLEETMAIL_TOKEN_PROXY_URL`), else
none: every call of a sign-in, a refresh and a revocation goes through it. Either is checked
the same way: its form before any call, then at each connection its host is resolved once,
every address checked against the operator's outbound rule (`fleetmail_runtime.outbound`) and
a checked address connected to (TLS to an `https://` proxy keeps its name). A proxy that is
malformed, refused by the rule, asks for credentials or refuses the tunnel ends the call as a
`ConfigurationError` naming the setting; one that cannot be reached, or whose upstream failed,
as `ProviderUnavailable`. Neither message carries the proxy's credentials.
"""

from __future__ import annotations

import functools
import re
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
from fleetmail_runtime.outbound import DestinationRefused, OutboundPolicy
from requests.adapters import HTTPAdapter
from urllib3 import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.exceptions import MaxRetryError, NameResolutionError, NewConnectionError
from urllib3.exceptions import ProxyError as Urllib3ProxyError
from urllib3.util.connection import create_connection

from ..errors import ConfigurationError, ProviderUnavailable, TokenServiceError

TENANT_PROXY_SETTING = "proxy_url"
SERVICE_PROXY_SETTING = "FLEETMAIL_TOKEN_PROXY_URL"
PROXY_SCHEMES = ("http", "https")
PROXY_RETRY_S = 30.0
_TUNNEL_STATUS = re.compile(r"Tunnel connection failed: (\d{3})")
"""How http.client says a proxy answered CONNECT with something other than 200."""


def proxy_form_refusal(url: str) -> str | None:
    """Why `url` is not a proxy URL (`http[s]://[user:password@]host[:port]`), or None. The
    reason never repeats the URL: it may carry credentials."""
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018 - a port that is not a number raises here
    except ValueError:
        return "it is not a URL (or its port is not a number)"
    if parts.scheme.lower() not in PROXY_SCHEMES:
        return f"its scheme must be http or https, not {parts.scheme or 'none'!r}"
    if not parts.hostname:
        return "it names no host"
    return None


@dataclass(frozen=True)
class Proxy:
    """The proxy provider calls go through, and the setting that named it."""

    url: str = field(repr=False)
    setting: str

    @classmethod
    def checked(cls, url: str, setting: str) -> Proxy:
        """The proxy of a setting, or a `ConfigurationError` naming the setting if malformed."""
        if (why := proxy_form_refusal(url)) is not None:
            raise ConfigurationError(f"the proxy in {setting} is refused: {why}", setting=setting)
        return cls(url.strip(), setting)

    @property
    def shown(self) -> str:
        """Where the proxy is, without its credentials."""
        parts = urlsplit(self.url)
        port = f":{parts.port}" if parts.port else ""
        return f"{parts.scheme}://{parts.hostname}{port}"

    def failure(self, exc: requests.exceptions.ProxyError) -> TokenServiceError:
        """What a call that failed at the proxy is: a setting to fix or a proxy to wait for."""
        where = f"the proxy {self.shown} ({self.setting})"
        reason = exc.args[0].reason if exc.args and isinstance(exc.args[0], MaxRetryError) else None
        original = reason.original_error if isinstance(reason, Urllib3ProxyError) else reason
        status = _TUNNEL_STATUS.search(str(original)) if isinstance(original, OSError) else None
        if status is None:
            return ProviderUnavailable(
                f"{where} could not be reached ({_connection_failure(original)}); the identity "
                "provider was not asked",
                PROXY_RETRY_S,
            )
        code = int(status.group(1))
        if code == 407:
            return ConfigurationError(
                f"{where} asks for credentials (HTTP 407): give them in the proxy URL as "
                "http://user:password@host:port",
                setting=self.setting,
            )
        if code < 500:
            return ConfigurationError(
                f"{where} refused the tunnel to the identity provider (HTTP {code}): allow the "
                "provider's host at the proxy",
                setting=self.setting,
            )
        return ProviderUnavailable(
            f"{where} could not open the tunnel to the identity provider (HTTP {code})", PROXY_RETRY_S
        )


def _connection_failure(exc: object) -> str:
    if isinstance(exc, NameResolutionError):
        return "its name does not resolve"
    if isinstance(exc, NewConnectionError):
        return "the connection was refused or timed out"
    return type(exc).__name__


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
    proxy: Proxy | None,
    timeout_s: float,
    throttle: ThrottleClock | None = None,
    *,
    outbound: OutboundPolicy,
) -> requests.Session:
    session = requests.Session()
    # trust_env off: REQUESTS_CA_BUNDLE would override `verify`, and the proxy is the
    # tenant's or the service's setting, not the host's environment (HTTPS_PROXY).
    session.trust_env = False
    session.verify = str(ca_bundle) if ca_bundle else True
    if proxy is not None:
        session.proxies = {"http": proxy.url, "https": proxy.url}
        adapter = CheckedProxyAdapter(outbound)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
    original = session.request

    def request_with_timeout(method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", timeout_s)
        try:
            response = original(method, url, *args, **kwargs)
        except DestinationRefused as exc:
            assert proxy is not None, "only a proxy's connections are checked here"
            raise ConfigurationError(
                f"the proxy in {proxy.setting} is not allowed: {exc}", setting=proxy.setting
            ) from None
        except requests.exceptions.ProxyError as exc:
            assert proxy is not None
            raise proxy.failure(exc) from None
        if throttle is not None:
            throttle.observe(url, response)
        return response

    session.request = request_with_timeout  # type: ignore[method-assign,assignment]
    return session
