"""`python -m notifier`: run the notifier with settings from the environment."""

from __future__ import annotations

import asyncio

from fleetmail_runtime.logging import configure_logging
from fleetmail_runtime.process import freeze_startup_objects

from .app import SERVICE, build_app
from .settings import NotifierSettings


def main() -> None:
    settings = NotifierSettings()
    configure_logging(SERVICE, settings.common.log_level, settings.common.log_format)
    notifier = build_app(settings)
    freeze_startup_objects()
    asyncio.run(notifier.app.run())


if __name__ == "__main__":
    main()
