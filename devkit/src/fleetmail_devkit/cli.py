"""`python -m fleetmail_devkit run|demo`: the local stack with a sample fleet."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path

from .fleet import DemoError, SampleFleet
from .stack import Ports, Stack, StackError


def say(line: str) -> None:
    print(f"{'fleet':>13} | {line}", flush=True)


async def main_async(mode: str, data_dir: Path) -> int:
    ports = Ports.from_env() if mode == "run" else Ports.free()
    stack = Stack(data_dir, ports, mongodb_uri=os.environ.get("MONGODB_URI"), echo=True)
    stop = asyncio.Event()
    outcome = ""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        say(f"starting the stack (data in {data_dir})")
        await stack.start()
        fleet = SampleFleet(stack, say)
        try:
            delivered, total = await fleet.run()
        finally:
            await fleet.close()
        if mode == "demo":
            outcome = f"delivered {delivered}/{total} jobs"
            return 0 if delivered == total else 1
        say(f"delivered {delivered}/{total} jobs")
        say(f"fleetmail is running. API docs: {stack.gateway_url}/docs")
        say(f"administrator API key: in {data_dir / 'admin-api-key'}")
        say(
            "metrics (Prometheus): "
            + ", ".join(f"{name} {stack.metrics_url(name)}" for name in stack.services)
        )
        say("press Ctrl-C to stop")
        await stop.wait()
        return 0
    except (StackError, DemoError) as exc:
        print(f"fleetmail: {exc}", file=sys.stderr, flush=True)
        return 2
    finally:
        say("stopping")
        await stack.stop()
        if outcome:
            # The demo's last line, after the stack's shutdown lines.
            print(outcome, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fleetmail-devkit")
    parser.add_argument("mode", choices=["run", "demo"])
    parser.add_argument("--data-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    data_dir = args.data_dir or Path(".fleetmail") / ("run" if args.mode == "run" else "demo")
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(main_async(args.mode, data_dir))
    return 130


if __name__ == "__main__":
    sys.exit(main())
