"""Issue 18, defect 6: deployment secrets. The attack on NATS routes, with real nats-servers:
two nodes run deploy/nats/nats-server.conf (its own TLS blocks, with certificates from
deploy/compose/secrets.sh's CAs) and form a cluster; a third node, holding a certificate the
services' CA signed (as MongoDB's or any service's would be), tries to join as a route. It
must be refused, and the cluster keeps its one route. (The file modes, mounts and MongoDB
users are checked in tests/unit/test_deploy_manifests.py.)"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fleetmail_devkit.ports import free_port, port_open

from tests.utils import eventually

DEPLOY = Path(__file__).parents[2] / "deploy"
NATS_SERVER = str(Path(sys.executable).parent / "nats-server")
PASSWORDS = {
    f"FLEETMAIL_NATS_{user}_PASSWORD": "x"
    for user in ("PROVISIONER", "JOB_GATEWAY", "TOKEN_SERVICE", "MAIL_SERVICE", "NOTIFIER", "SYSTEM")
}

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="secrets.sh needs openssl")


def openssl(*argv: str) -> None:
    subprocess.run(["openssl", *argv], check=True, capture_output=True)


def issue(ca: Path, ca_key: Path, out: Path, name: str) -> None:
    """A certificate for 127.0.0.1 (the nodes run on loopback) from one of secrets.sh's CAs."""
    ext = out / f"{name}.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}", "-keyout", str(out / f"{name}-key.pem"),
            "-out", str(out / f"{name}.csr"))  # fmt: skip
    openssl("x509", "-req", "-in", str(out / f"{name}.csr"), "-CA", str(ca), "-CAkey", str(ca_key),
            "-CAcreateserial", "-days", "1", "-extfile", str(ext), "-out", str(out / f"{name}.pem"))  # fmt: skip


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """/etc/nats/tls as a node sees it, made from secrets.sh's CAs; and `intruder.pem`, which
    the services' CA signed."""
    made = tmp_path_factory.mktemp("secrets")
    subprocess.run(["sh", str(DEPLOY / "compose" / "secrets.sh"), str(made)], check=True, capture_output=True)
    tls = tmp_path_factory.mktemp("nats-tls")
    ca, routes_ca = made / "ca" / "ca.pem", made / "ca" / "routes-ca.pem"
    issue(ca, made / "ca" / "ca-key.pem", tls, "server")
    issue(routes_ca, made / "ca" / "routes-ca-key.pem", tls, "routes")
    issue(ca, made / "ca" / "ca-key.pem", tls, "intruder")
    shutil.copy(ca, tls / "ca.pem")
    shutil.copy(routes_ca, tls / "routes-ca.pem")
    # The intruder trusts both CAs, so that only the cluster's side can refuse.
    (tls / "both-cas.pem").write_text(ca.read_text() + routes_ca.read_text())
    return tls


def node_config(conf: str, tls: Path, data: Path, ports: tuple[int, int], routes: list[int]) -> str:
    """The production configuration on loopback ports (monitoring, cluster), its TLS blocks as
    they are."""
    monitor, cluster = ports
    conf = conf.replace("/etc/nats/tls", str(tls)).replace("/data/jetstream", str(data / "js"))
    conf = conf.replace("port: 4222", f"host: 127.0.0.1\nport: {free_port()}")
    conf = conf.replace("http_port: 8222", f'http: "127.0.0.1:{monitor}"')
    conf = conf.replace("port: 6222", f"host: 127.0.0.1\n  port: {cluster}")
    route_list = "\n".join(f'    "nats-route://127.0.0.1:{port}"' for port in routes)
    return re.sub(r"routes: \[[^\]]*\]", f"routes: [\n{route_list}\n  ]", conf)


def prepare(folder: Path, conf: str) -> Path:
    """The node's folder with its configuration; the path of its log."""
    folder.mkdir()
    (folder / "nats-server.conf").write_text(conf)
    shutil.copy(DEPLOY / "nats" / "accounts.conf", folder / "accounts.conf")
    return folder / "nats.log"


@contextlib.asynccontextmanager
async def node(name: str, conf: str, folder: Path, monitor: int) -> AsyncIterator[Path]:
    """A running nats-server; its log file."""
    log = prepare(folder, conf)
    with log.open("wb") as output:
        process = await asyncio.create_subprocess_exec(
            NATS_SERVER, "-c", str(folder / "nats-server.conf"), stdout=output, stderr=output,
            env={**os.environ, **PASSWORDS, "NATS_SERVER_NAME": name}, start_new_session=True,
        )  # fmt: skip
        try:
            await eventually(lambda: port_open(monitor), within=20, what=f"{name} to listen")
            yield log
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            await process.wait()


async def routes(monitor: int) -> set[str]:
    """The servers a node has routes to, by name."""
    async with httpx.AsyncClient(timeout=5, trust_env=False) as http:
        found = (await http.get(f"http://127.0.0.1:{monitor}/routez")).json().get("routes") or []
    return {route["remote_name"] for route in found}


def intruding(conf: str) -> str:
    """The configuration with a route certificate the services' CA signed (the intruder's own
    side trusts both CAs, so that only the cluster can refuse)."""
    cluster = conf[conf.index("cluster {") :]
    names = {
        setting: re.search(rf'{setting}: "/etc/nats/tls/([^"]+)"', cluster).group(1)  # type: ignore[union-attr]
        for setting in ("cert_file", "key_file", "ca_file")
    }
    for setting, replacement in (("cert_file", "intruder.pem"), ("key_file", "intruder-key.pem"),
                                 ("ca_file", "both-cas.pem")):  # fmt: skip
        cluster = cluster.replace(
            f'{setting}: "/etc/nats/tls/{names[setting]}"', f'{setting}: "/etc/nats/tls/{replacement}"'
        )
    return conf[: conf.index("cluster {")] + cluster


@pytest.mark.timeout(90)
async def test_a_certificate_of_the_services_ca_cannot_join_the_cluster_as_a_route(
    certificates: Path, tmp_path: Path
) -> None:
    conf = (DEPLOY / "nats" / "nats-server.conf").read_text()
    monitors = [free_port() for _ in range(3)]
    clusters = [free_port() for _ in range(3)]

    def config(n: int, base: str, routes_to: list[int]) -> str:
        return node_config(base, certificates, tmp_path / f"n{n}", (monitors[n], clusters[n]), routes_to)

    async with (
        node("nats-0", config(0, conf, clusters[:2]), tmp_path / "n0", monitors[0]) as log,
        node("nats-1", config(1, conf, clusters[:2]), tmp_path / "n1", monitors[1]),
    ):
        # The cluster's own nodes route to each other with the routes' certificate.
        await eventually(lambda: routes(monitors[0]), within=20, what="nats-0 and nats-1 to form a cluster")
        assert await routes(monitors[0]) == {"nats-1"}
        assert await routes(monitors[1]) == {"nats-0"}

        async with node("intruder", config(2, intruding(conf), clusters[:1]), tmp_path / "n2", monitors[2]):
            # A positive sign first: nats-0 has seen the intruder's route and refused its TLS.
            def refused() -> bool:
                return "TLS route handshake error" in log.read_text(errors="replace")

            await eventually(
                refused, within=20, what=f"nats-0 to refuse the route: {log.read_text()[-1500:]}"
            )
            assert await routes(monitors[2]) == set()
            assert await routes(monitors[0]) == {"nats-1"}, (
                "a certificate of the services' CA joined the cluster"
            )
