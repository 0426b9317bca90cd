"""`python -m mail_service`: run mail-service with settings from the environment."""

from __future__ import annotations

import asyncio

from fleetmail_runtime.logging import configure_logging
from fleetmail_runtime.process import freeze_startup_objects

from .app import SERVICE, build_app
from .settings import MailSettings


def main() -> None:
    settings = MailSettings()
    configure_logging(SERVICE, settings.common.log_level, settings.common.log_format)
    app = build_app(settings).app
    freeze_startup_objects()
    asyncio.run(app.run())


if __name__ == "__main__":
    main()
