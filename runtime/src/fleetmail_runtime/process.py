"""What every service process does once it has started up."""

from __future__ import annotations

import gc


def freeze_startup_objects() -> None:
    """Take everything built at start-up (modules, the app, its settings and clients) out of
    the garbage collector's full collections, which would otherwise walk all of it again and
    again for the life of the process.

    Telemetry makes this matter: spans wait in the batch exporter's queue for up to a few
    seconds, long enough to reach the oldest generation, so full collections run often —
    and each one walked the whole start-up heap. Measured with mail-service delivering
    1,000 queued jobs (`/proc` CPU per job): telemetry on 2.29 → 2.17 ms, off 1.42 → 1.39 ms.
    Garbage left from start-up is collected first, so nothing is kept that was already dead.
    """
    gc.collect()
    gc.freeze()
