"""The embedded local stack: nats-server, SecantusDB, the emulators and the four services.

Used by `make run` / `make demo` and by the end-to-end tests, so what the tests prove is
what a developer runs. Each part is a process; their output is merged into one readable
stream with the part's name on every line.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import ssl
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import httpx
from fleetmail_runtime.identity_endpoints import DEFAULT_IDENTITY_ORIGINS
from fleetmail_runtime.outbound import LOOPBACK_RANGES

from .ca import TlsFiles, ensure_local_ca
from .ports import free_port, port_in_use, port_open

DEMO_CLIENT_ID = "fleetmail-demo-client"
DEMO_GOOGLE_CLIENT_ID = "fleetmail-demo.apps.googleusercontent.com"
DEMO_GOOGLE_CLIENT_SECRET = "demo-google-secret"
SERVICE_MODULES = {
    "token-service": "token_service",
    "mail-service": "mail_service",
    "notifier": "notifier",
    "job-gateway": "job_gateway",
}
COLOURS = ["36", "33", "35", "32", "34", "31", "96", "93", "95"]


class StackError(Exception):
    """A clear reason the stack cannot start (shown without a traceback)."""


@dataclass
class Ports:
    nats: int = 4222
    mongodb: int = 27017
    microsoft: int = 8443
    google: int = 8444
    smtp_starttls: int = 2587
    smtp_tls: int = 2465
    smtp_control: int = 2580
    graph: int = 2443
    """Microsoft Graph's mail API, served by the SMTP emulator next to Exchange's SMTP."""
    gateway: int = 8080
    gateway_smtp: int = 3587
    gateway_smtps: int = 3465
    gateway_smtp_lan: int = 3525
    # Prometheus scrape endpoints, one per service.
    metrics_gateway: int = 9460
    metrics_token: int = 9461
    metrics_mail: int = 9462
    metrics_notifier: int = 9463
    gmail_api: int = 2444
    """Where mail-service looks for the Gmail API: a Gmail emulator started on it
    (`probes.smtp_emulator(stack, "gmail", api_port=…)`) serves it; nothing listens otherwise."""

    @classmethod
    def free(cls) -> Ports:
        return cls(*(free_port() for _ in cls.__dataclass_fields__))

    @classmethod
    def from_env(cls) -> Ports:
        ports = cls()
        for name in ports.__dataclass_fields__:
            value = os.environ.get(f"FLEETMAIL_DEV_{name.upper()}_PORT")
            if value:
                setattr(ports, name, int(value))
        return ports


@dataclass
class Part:
    name: str
    argv: list[str]
    ready: Callable[[], bool] | None = None
    ready_line: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    port: int | None = None
    process: asyncio.subprocess.Process | None = None
    reader: asyncio.Task[None] | None = None
    seen_ready_line: bool = False
    output: list[str] = field(default_factory=list)
    """Its last lines (at most 500), for errors and probes; `Stack.log_dir` keeps them all."""


def venv_binary(name: str) -> str:
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise StackError(
            f"'{name}' was not found next to {sys.executable} or on PATH; run 'make install' "
            "(it comes with the project's Python environment)"
        )
    return found


class Stack:
    def __init__(
        self,
        data_dir: Path,
        ports: Ports,
        *,
        mongodb_uri: str | None = None,
        echo: bool = True,
        services: tuple[str, ...] = ("token-service", "mail-service", "notifier", "job-gateway"),
        extra_env: dict[str, str] | None = None,
        nats_config: Path | None = None,
        nats_passwords: dict[str, str] | None = None,
        nats_nodes: int = 1,
        emulators_only: bool = False,
    ) -> None:
        """`nats_config`: run nats-server with this configuration (e.g. least-privilege users);
        `nats_passwords`: NATS user → password, where each service connects as the user of
        its own name and a `provisioner` user declares the streams first; `nats_nodes`: a
        JetStream cluster of that many nodes on loopback (the first on `ports.nats`);
        `emulators_only`: only the provider emulators (no nats-server, database or services),
        for tests of the emulators themselves."""
        self.data_dir = data_dir.resolve()
        self.ports = ports
        self.external_mongodb = mongodb_uri
        self.echo = echo
        self.services = services
        self.extra_env = extra_env or {}
        self.nats_config = nats_config
        self.nats_passwords = nats_passwords or {}
        self._provisioned = False
        self.nats_nodes = nats_nodes
        self.emulators_only = emulators_only
        if emulators_only:
            self.services = ()
        self.nats_ports = [ports.nats] + [free_port() for _ in range(nats_nodes - 1)]
        self.nats_cluster_ports = [free_port() for _ in range(nats_nodes)] if nats_nodes > 1 else []
        self.parts: list[Part] = []
        self.tls: TlsFiles | None = None

    # --- addresses --------------------------------------------------------------------

    @property
    def nats_url(self) -> str:
        return f"nats://127.0.0.1:{self.ports.nats}"

    @property
    def nats_urls(self) -> str:
        """Every node's URL, comma-separated (what the services are given)."""
        return ",".join(f"nats://127.0.0.1:{port}" for port in self.nats_ports)

    @property
    def mongodb_uri(self) -> str:
        return self.external_mongodb or f"mongodb://127.0.0.1:{self.ports.mongodb}/?directConnection=true"

    @property
    def microsoft_url(self) -> str:
        return f"https://127.0.0.1:{self.ports.microsoft}"

    @property
    def google_url(self) -> str:
        return f"https://127.0.0.1:{self.ports.google}"

    @property
    def smtp_control_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.smtp_control}"

    @property
    def graph_url(self) -> str:
        return f"https://127.0.0.1:{self.ports.graph}"

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.gateway}"

    @property
    def ca_file(self) -> Path:
        assert self.tls is not None
        return self.tls.ca_cert

    def nats_password_env(self) -> dict[str, str]:
        """What nats-server reads the users' passwords from (deploy/nats/accounts.conf)."""
        return {
            f"FLEETMAIL_NATS_{user.upper().replace('-', '_')}_PASSWORD": password
            for user, password in self.nats_passwords.items()
        }

    def nats_user_env(self, user: str) -> dict[str, str]:
        if user not in self.nats_passwords:
            return {}
        return {
            "FLEETMAIL_NATS_USER": user,
            "FLEETMAIL_NATS_PASSWORD": self.nats_passwords[user],
            "FLEETMAIL_DECLARE_STREAMS": "false",
        }

    async def provision(self) -> None:
        """Declare streams and buckets as the provisioner user (services may not)."""
        env = {**os.environ, **self.nats_user_env("provisioner"), "FLEETMAIL_NATS_URL": self.nats_url}
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "fleetmail_runtime.provision",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=env,
        )
        output, _ = await process.communicate()
        if process.returncode != 0:
            raise StackError(f"provisioning the streams failed:\n{output.decode(errors='replace')}")

    def metrics_port(self, service: str) -> int:
        return {
            "job-gateway": self.ports.metrics_gateway,
            "token-service": self.ports.metrics_token,
            "mail-service": self.ports.metrics_mail,
            "notifier": self.ports.metrics_notifier,
        }[service]

    def metrics_url(self, service: str) -> str:
        """The service's Prometheus scrape endpoint."""
        return f"http://127.0.0.1:{self.metrics_port(service)}/metrics"

    def admin_api_key(self) -> str:
        return (self.data_dir / "admin-api-key").read_text().strip()

    def service_env(self) -> dict[str, str]:
        env = {
            "FLEETMAIL_NATS_URL": self.nats_urls,
            "FLEETMAIL_MONGODB_URI": self.mongodb_uri,
            "FLEETMAIL_DATA_DIR": str(self.data_dir),
            "FLEETMAIL_LOG_FORMAT": "json",
            "FLEETMAIL_TOKEN_MICROSOFT_AUTHORITY_HOST": self.microsoft_url,
            "FLEETMAIL_TOKEN_MICROSOFT_DIRECTORY": "contoso",
            "FLEETMAIL_TOKEN_MICROSOFT_CLIENT_ID": DEMO_CLIENT_ID,
            "FLEETMAIL_TOKEN_CA_BUNDLE": str(self.ca_file),
            "FLEETMAIL_MAIL_SMTP_CA_BUNDLE": str(self.ca_file),
            "FLEETMAIL_MAIL_RETRY_BASE_S": "1",
            # Tenants whose transport is graph send through the Exchange emulator's Graph API.
            "FLEETMAIL_MAIL_GRAPH_URL": self.graph_url,
            "FLEETMAIL_MAIL_API_CA_BUNDLE": str(self.ca_file),
            # Never Google's own: a gmail_api tenant of the local stack stays on loopback.
            "FLEETMAIL_MAIL_GMAIL_API_URL": f"https://127.0.0.1:{self.ports.gmail_api}",
            "FLEETMAIL_TOKEN_GOOGLE_CLIENT_ID": DEMO_GOOGLE_CLIENT_ID,
            "FLEETMAIL_TOKEN_GOOGLE_CLIENT_SECRET": DEMO_GOOGLE_CLIENT_SECRET,
            "FLEETMAIL_TOKEN_GOOGLE_AUTH_URI": f"{self.google_url}/o/oauth2/v2/auth",
            "FLEETMAIL_TOKEN_GOOGLE_TOKEN_URI": f"{self.google_url}/token",
            "FLEETMAIL_TOKEN_GOOGLE_REVOKE_URI": f"{self.google_url}/revoke",
            # Tenants may name the emulators as their identity endpoints, besides the real ones.
            "FLEETMAIL_IDENTITY_ALLOWED_ORIGINS": json.dumps(
                [*DEFAULT_IDENTITY_ORIGINS, self.microsoft_url, self.google_url]
            ),
            # Every server of the local stack listens on loopback, tenants' included.
            "FLEETMAIL_OUTBOUND_ALLOWED_RANGES": json.dumps(list(LOOPBACK_RANGES)),
            "FLEETMAIL_GATEWAY_PORT": str(self.ports.gateway),
            "FLEETMAIL_GATEWAY_PUBLIC_URL": self.gateway_url,
            # The device-facing SMTP listener, with the local CA's certificate.
            "FLEETMAIL_GATEWAY_SMTP_STARTTLS_PORT": str(self.ports.gateway_smtp),
            "FLEETMAIL_GATEWAY_SMTP_TLS_PORT": str(self.ports.gateway_smtps),
            "FLEETMAIL_GATEWAY_SMTP_PLAIN_PORT": str(self.ports.gateway_smtp_lan),
            "FLEETMAIL_GATEWAY_SMTP_TLS_CERT": str(self.data_dir / "tls" / "server.pem"),
            "FLEETMAIL_GATEWAY_SMTP_TLS_KEY": str(self.data_dir / "tls" / "server-key.pem"),
        }
        env.update(self.extra_env)
        return env

    # --- parts ------------------------------------------------------------------------

    def _nats_part(self, node: int) -> Part:
        """nats-server, or one node of a JetStream cluster on loopback."""
        client_port = self.nats_ports[node]
        argv = [
            venv_binary("nats-server"),
            "-a",
            "127.0.0.1",
            "-p",
            str(client_port),
            "-js",
            "-sd",
            str(self.data_dir / ("nats" if node == 0 else f"nats-{node + 1}")),
            "-n",
            "fleetmail-dev" if self.nats_nodes == 1 else f"fleetmail-{node + 1}",
        ]
        if self.nats_nodes > 1:
            routes = ",".join(f"nats://127.0.0.1:{port}" for port in self.nats_cluster_ports)
            argv += [
                "--cluster_name",
                "fleetmail",
                "--cluster",
                f"nats://127.0.0.1:{self.nats_cluster_ports[node]}",
                "--routes",
                routes,
            ]
        if self.nats_config:
            argv += ["-c", str(self.nats_config)]
        return Part(
            "nats" if node == 0 else f"nats-{node + 1}",
            argv,
            ready=lambda: port_open(client_port),
            port=client_port,
            env=self.nats_password_env(),
        )

    def _plan(self) -> list[Part]:
        py = sys.executable
        parts = [] if self.emulators_only else [self._nats_part(node) for node in range(self.nats_nodes)]
        if self.external_mongodb is None and not self.emulators_only:
            parts.append(
                Part(
                    "mongodb",
                    [
                        venv_binary("secantusd-py"),
                        "--host",
                        "127.0.0.1",
                        "--port",
                        str(self.ports.mongodb),
                        "--storage-path",
                        str(self.data_dir / "mongodb"),
                    ],
                    ready=lambda: port_open(self.ports.mongodb),
                    port=self.ports.mongodb,
                )
            )
        tls_dir = str(self.data_dir / "tls")
        parts.append(
            Part(
                "identity-emu",
                [
                    py,
                    "-m",
                    "fleetmail_devkit.emulators.serve",
                    "identity",
                    "--microsoft-port",
                    str(self.ports.microsoft),
                    "--google-port",
                    str(self.ports.google),
                    "--tls-dir",
                    tls_dir,
                    "--microsoft-app",
                    DEMO_CLIENT_ID,
                    "--google-app",
                    f"{DEMO_GOOGLE_CLIENT_ID}:{DEMO_GOOGLE_CLIENT_SECRET}",
                    "--redirect-uri",
                    f"{self.gateway_url}/oauth/callback",
                ],
                ready_line="identity emulators ready",
                port=self.ports.microsoft,
            )
        )
        parts.append(
            Part(
                "smtp-emu",
                [
                    py,
                    "-m",
                    "fleetmail_devkit.emulators.serve",
                    "smtp",
                    "--starttls-port",
                    str(self.ports.smtp_starttls),
                    "--tls-port",
                    str(self.ports.smtp_tls),
                    "--control-port",
                    str(self.ports.smtp_control),
                    "--tls-dir",
                    tls_dir,
                    "--maildir",
                    str(self.data_dir / "maildir"),
                    "--microsoft-url",
                    self.microsoft_url,
                    "--google-url",
                    self.google_url,
                    # The local stack's Exchange is one whose administrator enabled SMTP AUTH,
                    # as fleetmail's setup asks; the emulator's own default is Microsoft's (off).
                    "--smtp-auth-enabled",
                    "--api-port",
                    str(self.ports.graph),
                ],
                ready_line="smtp emulator",
                port=self.ports.smtp_starttls,
            )
        )
        for name in self.services:
            env = {**self.service_env(), **self.nats_user_env(name)}
            # extra_env may turn the scrape endpoint off ("0").
            env.setdefault("FLEETMAIL_METRICS_PORT", str(self.metrics_port(name)))
            part = Part(name, [py, "-m", SERVICE_MODULES[name]], env=env)
            if name == "job-gateway":
                part.ready = self._gateway_ready
                part.port = self.ports.gateway
            else:
                part.ready_line = f"{name} ready"
            parts.append(part)
        return parts

    def _gateway_ready(self) -> bool:
        try:
            return httpx.get(f"{self.gateway_url}/readyz", timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    def _check_ports(self, parts: list[Part]) -> None:
        ports = [(p.name, p.port) for p in parts if p.port is not None]
        ports += [
            ("google emulator", self.ports.google),
            ("smtp emulator", self.ports.smtp_tls),
            ("smtp emulator control", self.ports.smtp_control),
            ("graph emulator", self.ports.graph),
            ("gateway smtp", self.ports.gateway_smtp),
            ("gateway smtps", self.ports.gateway_smtps),
            ("gateway smtp (lan)", self.ports.gateway_smtp_lan),
            *((f"{name} metrics", self.metrics_port(name)) for name in self.services),
        ]
        for name, port in ports:
            if port is not None and port_in_use(port):
                raise StackError(
                    f"port {port} ({name}) is already in use: stop the program using it, or choose "
                    f"another port with FLEETMAIL_DEV_<PART>_PORT (see README, 'Local stack')"
                )

    async def start(self, timeout_s: float = 60.0) -> None:
        """Start the parts in three waves, each wave's parts at once: nats-server; the database
        and the emulators; then (after the provisioner, where there is one) the services,
        which do not depend on one another's start order."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.tls = ensure_local_ca(self.data_dir / "tls")
        planned = self._plan()
        self._check_ports(planned)
        nats = [p for p in planned if p.name.split("-")[0] == "nats"]
        services = [p for p in planned if p.name in self.services]
        others = [p for p in planned if p not in nats and p not in services]
        try:
            for wave in (nats, others, services):
                if (
                    wave is services
                    and wave
                    and "provisioner" in self.nats_passwords
                    and not self._provisioned
                ):
                    await self.provision()
                    self._provisioned = True
                async with asyncio.TaskGroup() as group:
                    for part in wave:
                        group.create_task(self._start_part(part, timeout_s))
        except BaseException as exc:
            await self.stop()
            if isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
                raise exc.exceptions[0] from None  # one part failed: say which, plainly
            raise

    async def _start_part(self, part: Part, timeout_s: float) -> None:
        env = {**os.environ, **part.env, "PYTHONUNBUFFERED": "1"}
        part.process = await asyncio.create_subprocess_exec(
            *part.argv,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        self.parts.append(part)
        part.reader = asyncio.create_task(self._pump(part))
        deadline = time.monotonic() + timeout_s
        while True:
            if part.process.returncode is not None:
                await asyncio.sleep(0.1)
                tail = "\n".join(part.output[-15:])
                raise StackError(
                    f"{part.name} exited with code {part.process.returncode} while starting:\n{tail}"
                )
            if part.ready_line is not None and part.seen_ready_line:
                return
            if part.ready is not None and await asyncio.to_thread(part.ready):
                return
            if time.monotonic() > deadline:
                raise StackError(f"{part.name} did not become ready within {timeout_s:.0f} s")
            await asyncio.sleep(0.1)

    @property
    def log_dir(self) -> Path:
        """Every line every part wrote, one file per part (`<name>.log`), never trimmed: parts
        that were stopped (a killed replica) keep theirs."""
        return self.data_dir / "logs"

    def log_files(self) -> list[Path]:
        return sorted(self.log_dir.glob("*.log"))

    async def _pump(self, part: Part) -> None:
        assert part.process is not None and part.process.stdout is not None
        colour = COLOURS[len(self.parts) % len(COLOURS)]
        tty = sys.stdout.isatty()
        self.log_dir.mkdir(parents=True, exist_ok=True)
        # Line-buffered: a reader (a test scanning logs) sees every line already written.
        with (self.log_dir / f"{part.name}.log").open("a", encoding="utf-8", buffering=1) as log:
            await self._copy_lines(part, log, colour, tty)

    async def _copy_lines(self, part: Part, log: TextIO, colour: str, tty: bool) -> None:
        assert part.process is not None and part.process.stdout is not None
        while True:
            line = await part.process.stdout.readline()
            if not line:
                return
            text = line.decode(errors="replace").rstrip()
            log.write(text + "\n")
            part.output.append(text)
            if len(part.output) > 500:
                del part.output[:100]
            if part.ready_line and part.ready_line in text:
                part.seen_ready_line = True
            if self.echo:
                label = f"{part.name:>13}"
                if tty:
                    label = f"\x1b[{colour}m{label}\x1b[0m"
                print(f"{label} | {render(text)}", flush=True)

    async def stop(self) -> None:
        """Stop the services (replicas included) together first, so none loses its bus or its
        database mid-shutdown; then the emulators and the database; nats-server last."""
        services = [p for p in self.parts if p.name.split("-")[0] in ("token", "mail", "notifier", "job")]
        nats = [p for p in self.parts if p.name.split("-")[0] == "nats"]
        others = [p for p in self.parts if p not in services and p not in nats]
        for wave in (services, others, nats):
            await asyncio.gather(*(self._stop(part) for part in wave))
        self.parts.clear()

    @staticmethod
    async def _stop(part: Part) -> None:
        if part.process is None:
            return
        if part.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(part.process.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(part.process.wait(), 15)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(part.process.pid, signal.SIGKILL)
                await part.process.wait()
        if part.reader is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await part.reader

    async def add_replica(
        self, service: str, env: dict[str, str] | None = None, timeout_s: float = 30.0
    ) -> Part:
        """Start one more process of a service (a replica), with optional extra settings."""
        count = sum(1 for p in self.parts if p.name.startswith(service))
        part = Part(
            f"{service}-{count + 1}",
            [sys.executable, "-m", SERVICE_MODULES[service]],
            # A replica has no scrape endpoint of its own unless given one: the port is taken.
            env={
                **self.service_env(),
                **self.nats_user_env(service),
                "FLEETMAIL_METRICS_PORT": "0",
                **(env or {}),
            },
            ready_line=f"{service} ready",
        )
        await self._start_part(part, timeout_s)
        return part

    async def stop_part(self, part: Part) -> int:
        assert part.process is not None
        if part.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(part.process.pid, signal.SIGTERM)
        code = await asyncio.wait_for(part.process.wait(), 20)
        if part.reader is not None:
            await part.reader
        self.parts.remove(part)
        return code

    async def restart_part(self, part: Part, timeout_s: float = 30.0) -> None:
        """Start a part again with the same command and ports, stopping it first if it runs
        (tests of outages)."""
        if part in self.parts:
            await self.stop_part(part)
        part.process, part.reader, part.seen_ready_line = None, None, False
        await self._start_part(part, timeout_s)

    def part(self, name: str) -> Part:
        return next(p for p in self.parts if p.name == name)

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))


@contextlib.asynccontextmanager
async def temporary_stack(prefix: str, timeout_s: float = 60.0, **options: Any) -> AsyncIterator[Stack]:
    """A quiet stack on free loopback ports in a temporary folder, started, then stopped and
    the folder removed (benchmarks, and tests that need a stack of their own). `options` are
    `Stack`'s keyword arguments."""
    data_dir = Path(tempfile.mkdtemp(prefix=prefix))
    stack = Stack(data_dir, Ports.free(), echo=False, **options)
    try:
        await stack.start(timeout_s=timeout_s)
        yield stack
    finally:
        await stack.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


_JSON_START = re.compile(r"^\{")


def render(line: str) -> str:
    """A service's JSON log line as one readable line; anything else unchanged."""
    if not _JSON_START.match(line):
        return line
    try:
        entry = json.loads(line)
    except ValueError:
        return line
    ts = str(entry.get("ts", ""))[11:19]
    level = str(entry.get("level", "")).upper()
    return f"{ts} {level:<7} {entry.get('msg', '')}"
