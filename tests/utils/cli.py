"""The `fleetmail` command line, run in-process against a stack's gateway."""

from __future__ import annotations

from fleetmail_cli import main
from fleetmail_cli.main import app
from typer.testing import CliRunner

# The CLI's consoles take their width once, when the module is imported (80 without a
# terminal): the tests read whole lines, as from a wide terminal.
main.out.width = main.err.width = 200


def cli(stack, *args: str, url: str | None = None):
    env = {
        "FLEETMAIL_URL": url or stack.gateway_url,
        "FLEETMAIL_API_KEY": stack.admin_api_key(),
        "COLUMNS": "200",
    }
    return CliRunner().invoke(app, list(args), env=env)
