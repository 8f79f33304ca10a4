"""Self-signed JWTs for PassKit's REST API.

PassKit authenticates every request with an HS256 JWT signed with the account's API *secret*, carrying
`{"uid": <API key>, "iat": <issued at>, "exp": <expiry>}`. `iat` is back-dated by a small skew because a
server whose clock runs behind ours rejects tokens "used before issued". Tokens are short-lived and reused
until close to expiry, so signing (tens of microseconds) happens about once a minute, not per request.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import jwt

from passpush.passkit.errors import PassKitConfigError

# Refresh when less than this share of the lifetime is left, and never later than 30 s before expiry
# (capped at half the lifetime, so very short test lifetimes still reuse their token for a while).
_REFRESH_SHARE = 0.2
_REFRESH_FLOOR_SECONDS = 30.0


def mint_token(
    api_key: str,
    api_secret: str,
    *,
    now: float,
    lifetime_seconds: int,
    clock_skew_seconds: int,
) -> str:
    """Sign one PassKit JWT valid from `now - clock_skew_seconds` to (at least) `now + lifetime_seconds`."""
    # Whole seconds, as PassKit's own examples; rounded outwards so the token is never shorter than asked.
    claims = {
        "uid": api_key,
        "iat": math.floor(now) - clock_skew_seconds,
        "exp": math.ceil(now) + lifetime_seconds,
    }
    return jwt.encode(claims, api_secret, algorithm="HS256")


def refresh_margin(lifetime_seconds: float) -> float:
    """Seconds before expiry at which a cached token is replaced."""
    return max(lifetime_seconds * _REFRESH_SHARE, min(_REFRESH_FLOOR_SECONDS, lifetime_seconds * 0.5))


class TokenCache:
    """Hands out the current token, minting a new one when the cached one is close to expiry.

    Not thread-safe and needs no lock: one instance belongs to one client on one event loop.
    """

    __slots__ = ("_api_key", "_api_secret", "_clock", "_lifetime", "_refresh_at", "_skew", "_token")

    def __init__(
        self,
        api_key: str,
        api_secret: str,
        *,
        lifetime_seconds: int,
        clock_skew_seconds: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if lifetime_seconds <= 0:
            raise PassKitConfigError(
                f"token_lifetime_seconds must be a positive number of seconds, got {lifetime_seconds!r}"
            )
        self._api_key = api_key
        self._api_secret = api_secret
        self._lifetime = lifetime_seconds
        self._skew = clock_skew_seconds
        self._clock = clock
        self._token = ""
        self._refresh_at = float("-inf")

    def current(self) -> str:
        """The cached token, or a freshly minted one when the cached one is due for refresh."""
        now = self._clock()
        if now >= self._refresh_at:
            self._token = mint_token(
                self._api_key,
                self._api_secret,
                now=now,
                lifetime_seconds=self._lifetime,
                clock_skew_seconds=self._skew,
            )
            self._refresh_at = now + self._lifetime - refresh_margin(self._lifetime)
        return self._token

    def invalidate(self) -> None:
        """Forget the cached token so the next request signs a new one (after a 401)."""
        self._refresh_at = float("-inf")

    @property
    def refresh_at(self) -> float:
        """Clock time at which the cached token will be replaced."""
        return self._refresh_at
