"""Exceptions raised by the PassKit client and hook.

Every error the package raises is one of these::

    PassKitError                     base: .status (HTTP status or None), .retryable, .retry_after
    ├── PassKitConfigError           a setting, connection field or argument is invalid (also a ValueError);
    │                                raised before any request is made
    ├── PassKitAuthError             401/403: wrong API key or secret, clock skew, no permission.
    │                                Campaign-wide: every further request would fail the same way.
    ├── PassKitHTTPError             any other non-2xx answer (and unreadable 2xx bodies)
    │   ├── PassKitNotFoundError     404: unknown member or program
    │   └── PassKitConflictError     409: already exists (enrol) or aborted
    └── PassKitTransportError        no HTTP answer: refused, reset or dropped connection
        └── PassKitTimeoutError      no complete answer within the request timeout

`PassKitClient.set_marketing_message` does not raise these for per-recipient failures: it returns a
`SendResult` whose `Outcome` carries the same classification, because the sending loop handles millions of
them and an exception per failed recipient would be both slow and noisy. Messages never contain the JWT or
the API secret.
"""

from __future__ import annotations


class PassKitError(Exception):
    """Base class: something about talking to PassKit failed.

    `status` is the HTTP status when PassKit answered, `retryable` says whether repeating the same request
    later can succeed, and `retry_after` is the server's hint in seconds, when it gave one.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retryable: bool = False,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.retryable = retryable
        self.retry_after = retry_after


class PassKitConfigError(PassKitError, ValueError):
    """A setting, connection field or call argument is invalid; nothing was sent."""


class PassKitAuthError(PassKitError):
    """PassKit refused the credentials (401) or the permission (403) for this API key."""


class PassKitHTTPError(PassKitError):
    """PassKit answered with a status the call cannot use."""


class PassKitNotFoundError(PassKitHTTPError):
    """404: the member or program does not exist in this account and region."""


class PassKitConflictError(PassKitHTTPError):
    """409: the gRPC gateway's ALREADY_EXISTS (enrol of a known externalId) or ABORTED."""


class PassKitTransportError(PassKitError):
    """No usable HTTP answer: the connection was refused, reset or dropped.

    For an update this is *in doubt*: PassKit may or may not have applied it.
    """


class PassKitTimeoutError(PassKitTransportError):
    """No complete answer within `timeout_seconds`; in doubt like any transport error."""
