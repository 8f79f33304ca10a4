"""A request-rate limit shared by every sender, on every worker, through Postgres.

Airflow pools cap how many ``send_batch`` tasks run at once, not how many requests per second
they make; a per-process limiter (aiolimiter and the like) cannot see the other workers. So the
limit lives in one row of ``passpush_rate_limits`` and is applied with GCRA "virtual scheduling":
a sender reserves a window of ``n`` request slots by moving the row's ``next_free`` forward by
``n / rate`` in a single UPDATE, then spaces its ``n`` requests evenly over that window. Windows of
all senders never overlap, so PassKit never sees more than ``rate`` requests per second, and
capacity left idle is not banked (no bursts after a pause). A reservation covers ~100 ms of
traffic, so the database sees ~10 small UPDATEs per second per running sender.

Times are taken from the database clock, so workers whose clocks disagree still share one
timeline. A window is put on the sender's own clock through the offset between the two clocks
measured by the reservation with the shortest round trip: placed by when its answer arrived, a window
whose answer came late (a slow commit, a busy event loop) would start late and run into the next
one, and the requests of both would reach PassKit together.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import deque

import psycopg

RESERVE_SQL = """
INSERT INTO passpush_rate_limits AS r (key, next_free)
VALUES (%(key)s, clock_timestamp() + make_interval(secs => %(span)s))
ON CONFLICT (key) DO UPDATE
    SET next_free = GREATEST(r.next_free, clock_timestamp()) + make_interval(secs => %(span)s)
RETURNING extract(epoch FROM r.next_free)::float8 - %(span)s, extract(epoch FROM clock_timestamp())::float8
"""

# How much traffic one reservation covers: small enough to share the rate fairly between
# senders, large enough to keep the database out of the hot path.
WINDOW_SECONDS = 0.1
# A slot this far in the past was missed (event loop busy, GC pause): using it now would add a burst.
STALE_AFTER_SECONDS = 0.05
# Seconds of round trip a clock sample may be slower than the best one, per second since that one.
OFFSET_AGING = 0.001


class GlobalRateLimiter:
    """``await limiter.acquire()`` before each request; safe to share among coroutines of one sender."""

    def __init__(self, conn: psycopg.AsyncConnection, key: str, rate_per_second: float) -> None:
        if rate_per_second <= 0:
            raise ValueError(f"rate_per_second must be > 0, got {rate_per_second!r}")
        self._conn = conn
        self._key = key
        self._interval = 1.0 / rate_per_second
        self._window = max(1, int(rate_per_second * WINDOW_SECONDS))
        self._slots: deque[float] = deque()
        self._lock = asyncio.Lock()
        self._offset = 0.0  # local monotonic time minus database time
        self._best_round_trip = float("inf")
        self._best_at = 0.0
        self._end = 0.0  # where this sender's last window ends, local time
        self.reservations = 0
        self.dropped = 0
        self.longest_round_trip = 0.0

    @property
    def rate(self) -> float:
        return 1.0 / self._interval

    @property
    def window(self) -> int:
        """Request slots per reservation."""
        return self._window

    async def _reserve(self) -> None:
        span = self._window * self._interval
        sent = time.monotonic()
        async with self._conn.cursor() as cur:
            await cur.execute(RESERVE_SQL, {"key": self._key, "span": span})
            row = await cur.fetchone()
        received = time.monotonic()
        assert row is not None
        window_start, database_now = float(row[0]), float(row[1])
        self._observe_clock(sent, received, database_now)
        # Never before this sender's previous window ends: its own windows must not overlap.
        start = max(window_start + self._offset, self._end)
        self._slots.extend(start + i * self._interval for i in range(self._window))
        self._end = start + span
        self.reservations += 1

    def _observe_clock(self, sent: float, received: float, database_now: float) -> None:
        """The database read its clock between ``sent`` and ``received``: the shorter that round trip,
        the closer its midpoint is to that instant, so the shortest one seen gives the offset."""
        round_trip = received - sent
        self.longest_round_trip = max(self.longest_round_trip, round_trip)
        # The best sample ages, so that a step of the database's clock is followed within seconds.
        if round_trip <= self._best_round_trip + OFFSET_AGING * (sent - self._best_at):
            self._best_round_trip, self._best_at = round_trip, sent
            self._offset = (sent + received) / 2 - database_now

    async def acquire(self) -> None:
        while True:
            async with self._lock:
                self._drop_stale_slots()
                if not self._slots:
                    await self._reserve()
                slot = self._slots.popleft()
            delay = slot - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            # A stall while we slept (a long garbage collection in a big task process) wakes every
            # waiter at once, each holding a slot that went by: those would leave as one burst.
            if time.monotonic() - slot <= STALE_AFTER_SECONDS:
                return
            self.dropped += 1

    def _drop_stale_slots(self) -> None:
        """Slots missed while the event loop stalled are given up, not fired together as a burst."""
        horizon = time.monotonic() - STALE_AFTER_SECONDS
        while self._slots and self._slots[0] < horizon:
            self._slots.popleft()
            self.dropped += 1


def limiter_key(base_url: str, api_key: str) -> str:
    """One limit per PassKit account and region: every campaign on it shares the same budget."""
    # The key is stored in the database: keep only a digest of the API key there.
    digest = hashlib.sha256(api_key.encode()).hexdigest()[:16]
    return f"passkit:{base_url.rstrip('/')}:{digest}"
