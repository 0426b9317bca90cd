"""The README's quick start, as a newcomer follows it: `make run` serves the sample fleet, the
`fleetmail` command line works against it with nothing set (it finds the key `make run`
wrote), its tables fit an 80-column terminal, and Ctrl-C stops every part cleanly."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from pathlib import Path

import pytest
from fleetmail_devkit.stack import Ports

REPO = Path(__file__).resolve().parents[2]
FLEETMAIL_CLI = Path(sys.executable).parent / "fleetmail"
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def test_the_readme_quick_start_is_what_make_run_does() -> None:
    """The test below runs `python -m fleetmail_devkit run` in a fresh working directory:
    that is exactly `make run`'s recipe, which the README's quick start names."""
    readme = (REPO / "README.md").read_text()
    assert "make run     #" in readme and "make test    #" in readme
    makefile = (REPO / "Makefile").read_text()
    recipe = makefile.split("\nrun:", 1)[1].split("\n")[1].strip()
    assert recipe == "$(PY) -m fleetmail_devkit run"


async def run_cli(cwd: Path, env: dict[str, str], *args: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        str(FLEETMAIL_CLI),
        *args,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=env,
    )
    output, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, output.decode()


@pytest.mark.timeout(240)
async def test_make_run_then_the_cli_then_ctrl_c(tmp_path: Path) -> None:
    ports = Ports.free()
    # The README's documented way to move the local stack off its default ports; the working
    # directory is a fresh one, so `make run` writes its data to ./.fleetmail/run as for a newcomer.
    env = {
        **os.environ,
        **{
            f"FLEETMAIL_DEV_{name.upper()}_PORT": str(getattr(ports, name))
            for name in ports.__dataclass_fields__
        },
    }
    for name in ("FLEETMAIL_API_KEY", "FLEETMAIL_DATA_DIR", "FLEETMAIL_URL"):
        env.pop(name, None)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "fleetmail_devkit",
        "run",
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=env,
    )
    assert process.stdout is not None
    output: list[str] = []

    async def read_until(marker: str) -> None:
        assert process.stdout is not None
        while True:
            line = (await process.stdout.readline()).decode()
            assert line, "make run ended early:\n" + "".join(output[-30:])
            output.append(line)
            if marker in line:
                return

    try:
        await asyncio.wait_for(read_until("press Ctrl-C to stop"), 120)
        assert any("delivered 6/6 jobs" in line for line in output)
        assert any(f"http://127.0.0.1:{ports.gateway}/docs" in line for line in output)
        assert (tmp_path / ".fleetmail" / "run" / "admin-api-key").exists()

        # The CLI as the README gives it: only the gateway's address (the documented
        # FLEETMAIL_URL, since this stack is not on 8080); the key is found, not given.
        cli_env = {**env, "FLEETMAIL_URL": f"http://127.0.0.1:{ports.gateway}", "COLUMNS": "80"}
        code, status = await run_cli(tmp_path, cli_env, "status")
        assert code == 0, status
        assert "no API key" not in status
        assert "job-gateway: ready" in ANSI.sub("", status)
        assert "contoso" in status, status
        code, tenants = await run_cli(tmp_path, cli_env, "tenants", "list")
        assert code == 0, tenants
        for screen in (status, tenants):
            wide = [line for line in ANSI.sub("", screen).splitlines() if len(line) > 80]
            assert wide == [], "lines wider than 80 columns:\n" + "\n".join(wide)
        # Column headers stay whole words at 80 columns (none broken over two lines).
        assert "administrator" in tenants and "tenant" in status

        # Elsewhere, with no key anywhere, the CLI says what to do instead of failing obscurely.
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        code, missing = await run_cli(elsewhere, cli_env, "status")
        assert code == 2 and "no API key: set FLEETMAIL_API_KEY" in missing, missing
    finally:
        # Ctrl-C, and wait for make run to stop its parts, whether the checks passed or not:
        # a test that left them running would slow every later test.
        if process.returncode is None:
            process.send_signal(signal.SIGINT)
        try:
            rest = (await asyncio.wait_for(process.stdout.read(), 60)).decode()
            code = await asyncio.wait_for(process.wait(), 30)
        except TimeoutError:
            process.kill()
            await process.wait()
            raise
    assert code == 0
    assert "Traceback" not in "".join(output) + rest
