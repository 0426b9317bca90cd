"""The one place MongoDB's errors become token-service's: a store that cannot be reached is
`StoreUnavailable` (transient); anything else is a bug and stays as it is."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

from pymongo.errors import ConnectionFailure, ExecutionTimeout

from ..errors import StoreUnavailable

P = ParamSpec("P")
R = TypeVar("R")

RETRY_AFTER_S = 5.0


def store_errors(
    what: str,
) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Coroutine[Any, Any, R]]]:
    """Decorate a store method: a lost or timed-out MongoDB becomes `StoreUnavailable(what)`."""

    def decorate(method: Callable[P, Awaitable[R]]) -> Callable[P, Coroutine[Any, Any, R]]:
        @functools.wraps(method)
        async def translated(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return await method(*args, **kwargs)
            except (ConnectionFailure, ExecutionTimeout) as exc:
                raise StoreUnavailable(f"cannot {what}: {type(exc).__name__}", RETRY_AFTER_S) from exc

        return translated

    return decorate
