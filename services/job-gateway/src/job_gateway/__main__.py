"""`python -m job_gateway`: serve the HTTP API with settings from the environment."""

from __future__ import annotations

import uvicorn
from fleetmail_runtime.logging import configure_logging
from fleetmail_runtime.process import freeze_startup_objects
from pydantic import ValidationError

from .app import SERVICE, build_app
from .settings import GatewaySettings


def main() -> None:
    try:
        settings = GatewaySettings()
    except ValidationError as exc:  # one line an operator reads, not a traceback
        refused = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise SystemExit(f"job-gateway: settings refused: {refused}") from None
    configure_logging(SERVICE, settings.common.log_level, settings.common.log_format)
    app = build_app(settings)
    freeze_startup_objects()
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        timeout_keep_alive=settings.http_keep_alive_s,
    )


if __name__ == "__main__":
    main()
