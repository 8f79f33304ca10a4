"""JWT minting and the token cache, with an injected clock."""

from __future__ import annotations

import jwt
import pytest

from passpush.passkit import PassKitConfigError, TokenCache, mint_token
from passpush.passkit.auth import refresh_margin

SECRET = "test-secret-0123456789-abcdefghijklmn"


def _claims(token: str) -> dict[str, object]:
    return jwt.decode(token, SECRET, algorithms=["HS256"], options={"verify_exp": False})


def test_mint_token_signs_uid_backdated_iat_and_exp() -> None:
    token = mint_token("key-1", SECRET, now=1_000_000.7, lifetime_seconds=300, clock_skew_seconds=30)

    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    assert _claims(token) == {"uid": "key-1", "iat": 999_970, "exp": 1_000_301}


def test_mint_token_is_rejected_with_another_secret() -> None:
    token = mint_token("key-1", SECRET, now=1_000_000, lifetime_seconds=60, clock_skew_seconds=0)

    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(
            token,
            "other-secret-0123456789-abcdefghijklm",
            algorithms=["HS256"],
            options={"verify_exp": False},
        )


@pytest.mark.parametrize(
    ("lifetime", "margin"),
    [(300, 60.0), (3600, 720.0), (60, 30.0), (10, 5.0), (2, 1.0)],
)
def test_refresh_margin_is_20_percent_but_at_least_30s_capped_at_half(lifetime: int, margin: float) -> None:
    assert refresh_margin(lifetime) == margin


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_token_cache_reuses_token_until_margin_then_mints_a_new_one() -> None:
    clock = FakeClock(1_000_000.0)
    cache = TokenCache("key-1", SECRET, lifetime_seconds=300, clock_skew_seconds=30, clock=clock)

    first = cache.current()
    clock.now += 239  # 61 s left: still above the 60 s margin
    assert cache.current() is first
    clock.now += 1  # 60 s left: due
    second = cache.current()

    assert second != first
    assert _claims(second)["iat"] == 1_000_240 - 30
    assert cache.refresh_at == 1_000_240 + 300 - 60


def test_token_cache_invalidate_forces_a_new_token() -> None:
    clock = FakeClock(1_000_000.0)
    cache = TokenCache("key-1", SECRET, lifetime_seconds=300, clock_skew_seconds=30, clock=clock)
    first = cache.current()
    clock.now += 1

    cache.invalidate()

    assert cache.current() != first


def test_token_cache_refuses_non_positive_lifetime() -> None:
    with pytest.raises(PassKitConfigError, match="token_lifetime_seconds must be a positive number"):
        TokenCache("key-1", SECRET, lifetime_seconds=0, clock_skew_seconds=30)
