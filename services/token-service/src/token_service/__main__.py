"""`python -m token_service [serve]` runs the service; `rotate-keys` re-encrypts every grant
and every stored credential.

python -m token_service rotate-keys --add-key   # new key, then re-encrypt under it
python -m token_service rotate-keys             # resume: re-encrypt what is left
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from fleetmail_runtime.crypto import CryptoError, KeyringFile, add_key
from fleetmail_runtime.logging import configure_logging
from fleetmail_runtime.mongo import connect_mongo
from fleetmail_runtime.process import freeze_startup_objects
from pydantic import ValidationError

from .adapters.credentials import CredentialStore
from .adapters.grants import MongoGrantStore
from .app import SERVICE, build_app
from .settings import TokenSettings


async def rotate_keys(settings: TokenSettings, add: bool) -> int:
    path = settings.common.keyring_path()
    if not path.exists():
        print(f"no keyring at {path}: nothing to rotate", file=sys.stderr)
        return 2
    if add:
        print(f"added key {add_key(path)} to {path}; it encrypts from now on")
    keyring = KeyringFile(path)
    mongo = connect_mongo(settings.common, f"{SERVICE}-rotate-keys")
    store = MongoGrantStore(mongo, settings.database, keyring)
    credentials = CredentialStore(mongo, settings.database, keyring)

    def progress(done: int, total: int) -> None:
        print(f"\rre-encrypted {done}/{total} grants", end="", flush=True)

    def credential_progress(done: int, total: int) -> None:
        print(f"\rre-encrypted {done}/{total} tenants' credentials", end="", flush=True)

    try:
        passes, rewritten = 0, 1
        # Replicas that have not re-read the keyring yet may seal under the old key for
        # up to a second: repeat until a pass finds nothing left.
        while rewritten and passes < 20:
            rewritten = await store.reseal_all(progress)
            rewritten += await credentials.reseal_all(credential_progress)
            passes += 1
            if rewritten:
                await asyncio.sleep(KeyringFile.RECHECK_S)
    except CryptoError as exc:
        print(f"\nstopped: {exc}", file=sys.stderr)
        return 1
    finally:
        await mongo.close()
    print(f"\nevery grant and credential is encrypted under key {keyring.current}")
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m token_service")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("serve", help="run token-service (the default)")
    rotate = sub.add_parser("rotate-keys", help="re-encrypt every grant under the newest key")
    rotate.add_argument("--add-key", action="store_true", help="first add a new key and make it current")
    args = parser.parse_args()
    try:
        settings = TokenSettings()
    except ValidationError as exc:
        # The operator's mistake, said once without a traceback; values are never echoed.
        sys.exit(f"{SERVICE}: settings refused, not started: {exc}")
    if args.command == "rotate-keys":
        sys.exit(asyncio.run(rotate_keys(settings, args.add_key)))
    configure_logging(SERVICE, settings.common.log_level, settings.common.log_format)
    app = build_app(settings).app
    freeze_startup_objects()
    asyncio.run(app.run())


if __name__ == "__main__":
    main()
