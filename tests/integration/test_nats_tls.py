"""The production profile's NATS over TLS: a service connects with the CA it is given
(`FLEETMAIL_NATS_CA_FILE`) and a user, and cannot connect without the CA."""

from __future__ import annotations

import asyncio
import shutil
import ssl
import sys
import tempfile
from pathlib import Path

import pytest
from fleetmail_devkit.ca import ensure_local_ca
from fleetmail_devkit.ports import free_port, port_open
from fleetmail_runtime.bus import make_broker
from fleetmail_runtime.settings import CommonSettings
from nats.errors import Error as NatsError


async def test_a_service_connects_over_tls_with_its_ca_and_not_without() -> None:
    workdir = Path(tempfile.mkdtemp(prefix="fleetmail-nats-tls-"))
    tls = ensure_local_ca(workdir / "tls")
    port = free_port()
    server = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "nats-server"),
        "-a", "127.0.0.1", "-p", str(port),
        "--tls", "--tlscert", str(tls.server_cert), "--tlskey", str(tls.server_key),
        "--user", "mail-service", "--pass", "s3cret",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        for _ in range(100):
            if port_open(port):
                break
            await asyncio.sleep(0.05)
        url = f"tls://127.0.0.1:{port}"
        trusted = CommonSettings(
            nats_url=url, nats_user="mail-service", nats_password="s3cret", nats_ca_file=tls.ca_cert
        )
        broker = make_broker(trusted, "mail-service")
        await broker.connect()
        assert broker.connection.is_connected
        await broker.stop()

        untrusted = CommonSettings(nats_url=url, nats_user="mail-service", nats_password="s3cret")
        stranger = make_broker(untrusted.model_copy(update={"nats_ca_file": None}), "mail-service")
        # The certificate is refused on every attempt: no connection (nats-py keeps retrying).
        with pytest.raises((ssl.SSLError, TimeoutError, NatsError)):
            await asyncio.wait_for(stranger.connect(), 3)
    finally:
        server.terminate()
        await server.wait()
        shutil.rmtree(workdir, ignore_errors=True)
