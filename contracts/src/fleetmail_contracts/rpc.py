"""The answer to a request the serving service could not carry out.

A request on an `rpc` subject is always answered. When the serving service cannot do what
was asked (its store refused the change, a bug), it answers with an `RpcFailure` body and
the `RPC_FAILURE_HEADER` header instead of the subject's reply model: the header's value is
`transient` (trying again may help) or `permanent` (it will not, until someone acts). The
reason is meant for an administrator's eyes and never carries a secret.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ._base import Contract

RPC_FAILURE_HEADER = "Fleetmail-Rpc-Failure"

FailureKind = Literal["transient", "permanent"]


class RpcFailure(Contract):
    reason: str = Field(max_length=1000)
    kind: FailureKind = "permanent"
