"""One real server at a time, for the component tier: nats-server alone, the
MongoDB-compatible server alone, or one emulator — not the whole stack."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from fleetmail_devkit.ports import free_port, port_open
from fleetmail_devkit.stack import venv_binary


@contextlib.asynccontextmanager
async def _process(argv: list[str], port: int, what: str, timeout_s: float = 30.0) -> AsyncIterator[None]:
    # Output goes to a file, never a pipe nobody reads: a full pipe would stop the server.
    with tempfile.TemporaryFile() as output:
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdout=output,
            stderr=output,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            start_new_session=True,
        )
        async with _running(process, output, port, what, timeout_s):
            yield


@contextlib.asynccontextmanager
async def _running(
    process: asyncio.subprocess.Process, output: IO[bytes], port: int, what: str, timeout_s: float
) -> AsyncIterator[None]:
    try:
        deadline = time.monotonic() + timeout_s
        while not port_open(port):
            if process.returncode is not None:
                output.seek(0)
                error = output.read().decode(errors="replace")[-2000:]
                raise RuntimeError(f"{what} exited with code {process.returncode}:\n{error}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not open port {port} within {timeout_s:g} s")
            await asyncio.sleep(0.05)
        yield
    finally:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), 10)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                await process.wait()


@contextlib.asynccontextmanager
async def scratch_dir(prefix: str) -> AsyncIterator[Path]:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextlib.asynccontextmanager
async def nats_server() -> AsyncIterator[str]:
    """A JetStream nats-server on a free loopback port; yields its URL."""
    port = free_port()
    async with scratch_dir("fleetmail-nats-") as data:
        argv = [venv_binary("nats-server"), "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", str(data)]
        async with _process(argv, port, "nats-server"):
            yield f"nats://127.0.0.1:{port}"


@contextlib.asynccontextmanager
async def mongodb_server() -> AsyncIterator[str]:
    """The MongoDB-compatible server (SecantusDB) with a throwaway store; yields its URI."""
    port = free_port()
    argv = [
        venv_binary("secantusd-py"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--storage-path",
        ":memory:",
    ]
    async with _process(argv, port, "secantusd-py"):
        yield f"mongodb://127.0.0.1:{port}/?directConnection=true"


def python_module(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


@dataclass(frozen=True)
class SmtpEmulator:
    starttls_port: int
    control_url: str
    ca_file: Path
    """The CA that signed the server's certificate (made in a scratch directory)."""


@contextlib.asynccontextmanager
async def smtp_emulator_server(flavour: str = "microsoft") -> AsyncIterator[SmtpEmulator]:
    """The SMTP emulator alone, with no identity emulators behind it: PLAIN/LOGIN mailboxes work
    (`POST <control_url>/_emulator/mailboxes`), and an XOAUTH2 token is refused."""
    starttls, implicit, control = free_port(), free_port(), free_port()
    async with scratch_dir("fleetmail-smtp-") as data:
        nowhere = "https://127.0.0.1:9"  # no identity emulator: tokens cannot be checked, so fail
        argv = python_module(
            "fleetmail_devkit.emulators.serve",
            "smtp",
            "--flavour",
            flavour,
            "--starttls-port",
            str(starttls),
            "--tls-port",
            str(implicit),
            "--control-port",
            str(control),
            "--tls-dir",
            str(data / "tls"),
            "--maildir",
            str(data / "maildir"),
            "--microsoft-url",
            nowhere,
            "--google-url",
            nowhere,
            "--smtp-auth-enabled",  # as an administrator would have it for fleetmail
        )
        # The control API opens last, after both SMTP ports.
        async with _process(argv, control, "the SMTP emulator"):
            yield SmtpEmulator(starttls, f"http://127.0.0.1:{control}", data / "tls" / "ca.pem")
