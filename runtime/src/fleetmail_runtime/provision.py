"""Create or update fleetmail's streams, buckets and object store, once per deploy.

Where services run under least-privilege NATS users (deploy/nats/accounts.conf), none of them
may create streams: this does, as the `provisioner` user, before the services start (a
Kubernetes Job, a compose one-shot service). Then start the services with
`FLEETMAIL_DECLARE_STREAMS=false`.

    FLEETMAIL_NATS_URL=… FLEETMAIL_NATS_USER=provisioner FLEETMAIL_NATS_PASSWORD=… \\
        python -m fleetmail_runtime.provision
"""

from __future__ import annotations

import asyncio
import sys

from .bus import declare_streams, make_broker
from .redaction import redact
from .settings import CommonSettings


async def provision(settings: CommonSettings) -> None:
    settings = settings.model_copy(update={"declare_streams": True})
    broker = make_broker(settings, "provisioner")
    await broker.connect()
    try:
        await declare_streams(broker, settings)
    finally:
        await broker.stop()


def main() -> int:
    settings = CommonSettings()
    try:
        asyncio.run(provision(settings))
    except Exception as exc:  # one clear line for the operator, not a traceback
        print(f"provisioning failed: {type(exc).__name__}: {redact(str(exc))}", file=sys.stderr)
        return 1
    print(f"streams, buckets and object store are in place on {redact(settings.nats_url)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
