"""PassKit REST client (async, aiohttp) and its Airflow hook.

Importing this package does not import Airflow: the client, the emulator tests and the benchmark use it
without a scheduler around. `PassKitHook` is loaded on first access.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from passpush.passkit.auth import TokenCache, mint_token
from passpush.passkit.client import (
    Outcome,
    PassKitClient,
    PassKitSettings,
    SendResult,
    classify_status,
    describe_error_body,
    parse_retry_after,
)
from passpush.passkit.errors import (
    PassKitAuthError,
    PassKitConfigError,
    PassKitConflictError,
    PassKitError,
    PassKitHTTPError,
    PassKitNotFoundError,
    PassKitTimeoutError,
    PassKitTransportError,
)

if TYPE_CHECKING:
    from passpush.passkit.hook import PassKitHook

__all__ = [
    "Outcome",
    "PassKitAuthError",
    "PassKitClient",
    "PassKitConfigError",
    "PassKitConflictError",
    "PassKitError",
    "PassKitHTTPError",
    "PassKitHook",
    "PassKitNotFoundError",
    "PassKitSettings",
    "PassKitTimeoutError",
    "PassKitTransportError",
    "SendResult",
    "TokenCache",
    "classify_status",
    "describe_error_body",
    "mint_token",
    "parse_retry_after",
]


def __getattr__(name: str) -> Any:
    # The hook pulls in Airflow's task SDK; only pay for that when the hook is asked for.
    if name == "PassKitHook":
        from passpush.passkit.hook import PassKitHook

        return PassKitHook
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
