"""The global rate limiter against real Postgres: shared windows, and slots missed in a stall given up.

No wall-clock speed is asserted (that is the bench's job): the tests check what the limiter reserved in
the database and what it did with the slots a blocked event loop reached too late.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid

import psycopg
import pytest

from passpush.ratelimit import STALE_AFTER_SECONDS, GlobalRateLimiter, limiter_key

pytestmark = [pytest.mark.postgres]


def _next_free_ahead(url: str, key: str) -> float:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT extract(epoch FROM next_free - clock_timestamp())::float8"
                           " FROM passpush_rate_limits WHERE key = %s", (key,)).fetchone()
    assert row is not None
    return float(row[0])


def test_two_senders_on_one_key_reserve_windows_one_after_the_other(migrated_database_url: str) -> None:
    key = f"test:{uuid.uuid4()}"

    async def main() -> tuple[int, int, float]:
        async with await psycopg.AsyncConnection.connect(migrated_database_url, autocommit=True) as a, \
                await psycopg.AsyncConnection.connect(migrated_database_url, autocommit=True) as b:
            first, second = GlobalRateLimiter(a, key, 2.0), GlobalRateLimiter(b, key, 2.0)
            started = time.monotonic()
            await first.acquire()  # 2/s: one slot per reservation, a window of 0.5 s
            await second.acquire()  # another sender: its window starts where the first one's ends
            return first.reservations, second.reservations, time.monotonic() - started

    first, second, waited = asyncio.run(main())
    assert (first, second) == (1, 1)
    # the second sender's only slot is the one after the first sender's window, not beside it
    assert waited >= 0.5 - STALE_AFTER_SECONDS
    # and the shared row now points past both windows
    assert 0.0 < _next_free_ahead(migrated_database_url, key) <= 0.5 + 0.05


def test_slots_missed_while_the_loop_was_blocked_are_given_up_not_fired_together(
        migrated_database_url: str) -> None:
    key = f"test:{uuid.uuid4()}"

    async def main() -> GlobalRateLimiter:
        async with await psycopg.AsyncConnection.connect(migrated_database_url, autocommit=True) as conn:
            limiter = GlobalRateLimiter(conn, key, 100.0)  # windows of 10 slots, 10 ms apart
            await limiter.acquire()
            time.sleep(0.1 + 4 * STALE_AFTER_SECONDS)  # a stall: every other slot of the window goes by
            await limiter.acquire()
            return limiter

    limiter = asyncio.run(main())
    assert limiter.window == 10
    assert limiter.dropped == limiter.window - 1  # the rest of the first window, all of it stale
    assert limiter.reservations == 2  # the second request waited for a slot of a new window


def test_a_rate_of_zero_is_refused() -> None:
    with pytest.raises(ValueError, match="rate_per_second must be > 0"):
        GlobalRateLimiter(None, "k", 0)  # type: ignore[arg-type]


def test_the_key_names_account_and_region_but_stores_no_api_key() -> None:
    key = limiter_key("https://api.pub1.passkit.io/", "secret-api-key")
    assert key.startswith("passkit:https://api.pub1.passkit.io:")
    assert "secret-api-key" not in key
    assert key != limiter_key("https://api.pub2.passkit.io", "secret-api-key")


def test_a_reservation_answered_late_does_not_run_into_the_next_window(migrated_database_url: str) -> None:
    """The event loop busy while a reservation's answer is in flight (a slow commit has the same effect):
    the window is still placed where the database put it, so no two slots come closer than the rate."""
    key = f"test:{uuid.uuid4()}"

    async def main() -> tuple[list[float], float]:
        async with await psycopg.AsyncConnection.connect(migrated_database_url, autocommit=True) as conn:
            limiter = GlobalRateLimiter(conn, key, 200.0)  # windows of 20 slots, 5 ms apart
            await limiter._reserve()
            # runs as soon as the next reservation waits for its answer, and holds the loop 60 ms
            asyncio.get_running_loop().call_soon(time.sleep, 0.06)
            await limiter._reserve()
            await limiter._reserve()
            return list(limiter._slots), limiter.longest_round_trip

    slots, longest = asyncio.run(main())
    assert longest >= 0.06  # the answer did arrive late
    assert len(slots) == 60
    gaps = [b - a for a, b in itertools.pairwise(slots)]
    assert min(gaps) >= 0.005 - 1e-6, f"two slots {min(gaps) * 1000:.2f} ms apart at 200/s"
