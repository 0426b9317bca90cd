"""The attachments object store's safety nets against a real nats-server: a store made
without limits (a deployment from before them) gets them in place, its objects kept; a
service that does not declare streams says at start how the store differs from its settings."""

from __future__ import annotations

import io
import logging
from datetime import timedelta

import nats
import pytest
from fleetmail_contracts.streams import ATTACHMENTS_BUCKET
from fleetmail_runtime.bus import declare_streams, make_broker
from fleetmail_runtime.provision import provision
from fleetmail_runtime.settings import CommonSettings
from pydantic import ValidationError

STREAM = f"OBJ_{ATTACHMENTS_BUCKET}"


async def test_a_store_without_limits_is_reported_then_given_them_in_place(nats_url, caplog) -> None:
    client = await nats.connect(nats_url)
    try:
        js = client.jetstream()
        old = await js.create_object_store(ATTACHMENTS_BUCKET)  # as made before the limits
        await old.put("kept/1/0", io.BytesIO(b"a document in flight"))
        settings = CommonSettings(
            nats_url=nats_url,
            attachments_max_bytes=50_000_000,
            attachments_max_age_days=3,
            dead_letter_retention_days=1,
        )

        broker = make_broker(settings.model_copy(update={"declare_streams": False}), "mail-service")
        await broker.connect()
        try:
            with caplog.at_level(logging.WARNING, logger="fleetmail_runtime.bus"):
                await declare_streams(
                    broker, settings.model_copy(update={"declare_streams": False}), uses=(ATTACHMENTS_BUCKET,)
                )
        finally:
            await broker.stop()
        assert "max_bytes is -1, the settings say 5e+07" in caplog.text
        assert "max_age is 0, the settings say 259200" in caplog.text

        await provision(settings)
        config = (await js.stream_info(STREAM)).config
        assert config.max_bytes == 50_000_000
        assert config.max_age == timedelta(days=3).total_seconds()
        assert (await old.get("kept/1/0")).data == b"a document in flight"
        await provision(settings)  # again: nothing to change, nothing fails
    finally:
        await client.close()


def test_the_store_may_not_drop_documents_before_a_dead_letters_retention_ends() -> None:
    with pytest.raises(ValidationError, match="attachments_max_age_days must be above"):
        CommonSettings(attachments_max_age_days=7, dead_letter_retention_days=7)
