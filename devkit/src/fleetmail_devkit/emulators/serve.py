"""Run emulators as processes: `python -m fleetmail_devkit.emulators.serve identity|smtp ...`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from pathlib import Path

import uvicorn
from fastapi import FastAPI

from ..ca import TlsFiles, ensure_local_ca

KEEP_ALIVE_S = 120


def https_server(app: FastAPI, port: int, tls: TlsFiles, host: str = "127.0.0.1") -> uvicorn.Server:
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        ssl_certfile=str(tls.server_cert),
        ssl_keyfile=str(tls.server_key),
        log_level="warning",
        access_log=False,
        lifespan="off",
        # Clients that keep connections alive (MSAL sessions in tests) must not hold up a stop.
        timeout_graceful_shutdown=1,
        # uvicorn closes an idle connection after 5 s; a client reusing it at that moment gets
        # "Server disconnected without sending a response" (a loaded CI machine did, twice).
        # Identity providers' front doors keep idle connections for minutes.
        timeout_keep_alive=KEEP_ALIVE_S,
    )
    return uvicorn.Server(config)


async def run_servers(
    servers: list[uvicorn.Server], ready: str, extra: list[asyncio.Task[None]] | None = None
) -> None:
    """Serve until SIGINT/SIGTERM; print `ready` once every server listens. The stack waits for
    that line, so printing it before the sockets are bound let a fast client meet a refused
    connection (CI did, on a busy machine)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    for server in servers:
        # Each uvicorn server would install its own handler over ours and stop only itself,
        # leaving the others running until the stack kills the process.
        server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
    tasks = [asyncio.create_task(s.serve()) for s in servers]
    while not all(s.started for s in servers):
        if any(t.done() for t in tasks):  # one could not bind: uvicorn has said why
            break
        await asyncio.sleep(0.01)
    else:
        print(ready, flush=True)
    await stop.wait()
    for server in servers:
        server.should_exit = True
    await asyncio.gather(*tasks, return_exceptions=True)
    for task in extra or []:
        task.cancel()


def _apps(values: list[str]) -> list[tuple[str, str | None]]:
    found = []
    for value in values:
        client_id, _, secret = value.partition(":")
        found.append((client_id, secret or None))
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fleetmail-emulators")
    sub = parser.add_subparsers(dest="which", required=True)
    identity = sub.add_parser("identity", help="Microsoft identity platform and Google OAuth")
    identity.add_argument("--microsoft-port", type=int, required=True)
    identity.add_argument("--google-port", type=int, required=True)
    identity.add_argument("--tls-dir", type=Path, required=True)
    identity.add_argument("--microsoft-app", action="append", default=[], help="client_id[:secret]")
    identity.add_argument("--google-app", action="append", default=[], help="client_id:secret")
    identity.add_argument(
        "--redirect-uri", action="append", default=[], help="registered for every app above"
    )
    smtp = sub.add_parser("smtp", help="SMTP server that checks XOAUTH2 against the emulators")
    smtp.add_argument("--starttls-port", type=int, required=True)
    smtp.add_argument("--tls-port", type=int, required=True)
    smtp.add_argument("--control-port", type=int, required=True)
    smtp.add_argument("--tls-dir", type=Path, required=True)
    smtp.add_argument("--maildir", type=Path, required=True)
    smtp.add_argument("--microsoft-url", required=True)
    smtp.add_argument("--google-url", required=True)
    smtp.add_argument("--flavour", choices=["microsoft", "gmail"], default="microsoft")
    smtp.add_argument(
        "--api-port", type=int, default=0, help="HTTPS port of the provider's mail API (Graph or Gmail API)"
    )
    smtp.add_argument(
        "--smtp-auth-enabled",
        action="store_true",
        help="Exchange: SMTP AUTH on for the organisation (Microsoft's default since 2020 is off)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stdout)
    logging.getLogger("mail.log").setLevel(logging.ERROR)
    tls = ensure_local_ca(args.tls_dir)
    if args.which == "identity":
        from . import google, microsoft

        ms_app = microsoft.create_app(
            f"https://127.0.0.1:{args.microsoft_port}",
            [
                microsoft.App(cid, secret, tuple(args.redirect_uri))
                for cid, secret in _apps(args.microsoft_app)
            ],
        )
        g_app = google.create_app(
            f"https://127.0.0.1:{args.google_port}",
            [
                google.App(cid, secret, False, tuple(args.redirect_uri))
                for cid, secret in _apps(args.google_app)
            ],
        )
        servers = [https_server(ms_app, args.microsoft_port, tls), https_server(g_app, args.google_port, tls)]
        ready = (
            f"identity emulators ready: microsoft https://127.0.0.1:{args.microsoft_port} "
            f"google https://127.0.0.1:{args.google_port}"
        )
        asyncio.run(run_servers(servers, ready))
        return 0
    from . import smtp as smtp_emulator

    asyncio.run(smtp_emulator.serve(args, tls))
    return 0


if __name__ == "__main__":
    sys.exit(main())
