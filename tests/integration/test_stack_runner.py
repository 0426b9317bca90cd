"""The stack runner says clearly what is wrong instead of showing a traceback."""

import socket
from pathlib import Path

import pytest
from fleetmail_devkit.stack import Ports, Stack, StackError, render, venv_binary


async def test_a_taken_port_is_named(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        ports = Ports.free()
        ports.nats = taken.getsockname()[1]
        with pytest.raises(StackError, match=rf"port {ports.nats} \(nats\) is already in use"):
            await Stack(tmp_path, ports, echo=False).start()


def test_a_missing_binary_is_named() -> None:
    with pytest.raises(StackError, match="'no-such-server' was not found"):
        venv_binary("no-such-server")


def test_service_json_lines_are_rendered_readably() -> None:
    line = '{"ts": "2026-11-28T10:11:12.000+00:00", "level": "info", "service": "x", "msg": "hello"}'
    assert render(line) == "10:11:12 INFO    hello"
    assert render("plain text") == "plain text"
