"""`make run` serves until Ctrl-C, then stops every part cleanly."""

import asyncio
import os
import signal
import sys
from pathlib import Path

from fleetmail_devkit.stack import Ports


async def test_run_serves_then_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    ports = Ports.free()
    env = {
        **os.environ,
        **{
            f"FLEETMAIL_DEV_{name.upper()}_PORT": str(getattr(ports, name))
            for name in ports.__dataclass_fields__
        },
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "fleetmail_devkit",
        "run",
        "--data-dir",
        str(tmp_path / "run"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=env,
    )
    assert process.stdout is not None
    output: list[str] = []

    async def read_until(marker: str) -> None:
        while True:
            line = (await process.stdout.readline()).decode()
            assert line, "make run ended early:\n" + "".join(output[-30:])
            output.append(line)
            if marker in line:
                return

    await asyncio.wait_for(read_until("press Ctrl-C to stop"), 90)
    assert any("delivered 6/6 jobs" in line for line in output)
    assert any(f"http://127.0.0.1:{ports.gateway}/docs" in line for line in output)
    process.send_signal(signal.SIGINT)
    rest = (await asyncio.wait_for(process.stdout.read(), 60)).decode()
    assert await process.wait() == 0
    assert "Traceback" not in "".join(output) + rest
