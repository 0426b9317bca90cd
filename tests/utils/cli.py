"""The `fleetmail` command line, run in-process against a stack's gateway."""

from __future__ import annotations

from fleetmail_cli.main import app
from typer.testing import CliRunner


def cli(stack, *args: str, url: str | None = None):
    env = {
        "FLEETMAIL_URL": url or stack.gateway_url,
        "FLEETMAIL_API_KEY": stack.admin_api_key(),
        "COLUMNS": "200",
    }
    return CliRunner().invoke(app, list(args), env=env)
