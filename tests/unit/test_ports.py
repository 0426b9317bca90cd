"""Ports for the local stack come from outside the range outgoing connections use."""

import socket

from fleetmail_devkit.ports import _ephemeral_start, free_port


def test_free_ports_are_distinct_bindable_and_below_the_ephemeral_range() -> None:
    ports = [free_port() for _ in range(200)]
    assert len(set(ports)) == len(ports)
    assert all(20000 <= port < _ephemeral_start() for port in ports)
    with socket.socket() as s:
        s.bind(("127.0.0.1", ports[-1]))


def test_a_port_someone_listens_on_is_skipped(monkeypatch) -> None:
    with socket.socket() as taken, socket.socket() as spare:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        spare.bind(("127.0.0.1", 0))
        busy, free = taken.getsockname()[1], spare.getsockname()[1]
        spare.close()
        draws = iter([busy, free])
        monkeypatch.setattr("fleetmail_devkit.ports.random.randrange", lambda a, b: next(draws))
        assert free_port() == free


def test_parallel_workers_draw_from_their_own_slices(monkeypatch) -> None:
    top = _ephemeral_start()
    middle = 20000 + (top - 20000) // 2
    monkeypatch.setenv("FLEETMAIL_DEV_PORT_SLICE", "0/2")
    first = [free_port() for _ in range(50)]
    monkeypatch.setenv("FLEETMAIL_DEV_PORT_SLICE", "1/2")
    second = [free_port() for _ in range(50)]
    assert all(20000 <= port < middle for port in first)
    assert all(middle <= port < top for port in second)
