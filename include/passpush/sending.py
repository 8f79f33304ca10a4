"""Deliver a batch of recipients to PassKit: paced, concurrent, retried, recorded as it goes.

Per recipient row the life is PENDING -> SENDING (claimed just before its request) -> SENT |
SKIPPED | FAILED | RETRYABLE. Claims and outcomes are written in bulk (one UPDATE per chunk), so a
crash loses at most what was in flight.

No member is buzzed twice by one campaign. A retried task finds rows left in SENDING by the
process that died: their request may or may not have reached PassKit. They are re-sent in
"verify" mode: the member is read first, and if the pass already shows the text the row is
marked SENT without writing again. Even a blind repeat would be harmless for the buzz: a pass
only notifies when a field changes value, and the repeated value is the same.

A 401/403 stops the campaign at once: the sender records the abort reason on the campaign
(every other sender checks it before each chunk) and raises, instead of a retry storm.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import sql
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_result,
    stop_after_attempt,
    wait_exponential_jitter,
)

from passpush.errors import CampaignAbortedError
from passpush.passkit import (
    Outcome,
    PassKitClient,
    PassKitError,
    PassKitSettings,
    SendResult,
    classify_status,
)
from passpush.quiet_hours import QuietHours
from passpush.ratelimit import STALE_AFTER_SECONDS, GlobalRateLimiter, limiter_key

log = logging.getLogger(__name__)

PROGRESS_EVERY_SECONDS = 5.0
FLUSH_EVERY_SECONDS = 0.5
FLUSH_EVERY_ROWS = 500


@dataclass(frozen=True)
class SendOptions:
    rate_limit_per_second: float
    # Per recipient within one pass, ~25 s of backoff in all (0.25, 0.5, 1 ... 10 s): a short PassKit
    # outage is waited out. Reconcile makes one more bounded pass.
    max_attempts: int = 8
    max_backoff_seconds: float = 10.0
    # Recipients worked on at once. It has to cover the latency: rate x round-trip x requests per send
    # (64 held read_modify_write to ~1,200 sends/s at 20 ms); PassKit still sees at most
    # max_connections (default: the same 128) requests at a time and never more than the rate.
    max_in_flight: int = 128
    quiet_hours: QuietHours | None = None
    # The campaign's frequency cap, checked again as each row is claimed (0: none, as for a test send)
    frequency_cap_seconds: float = 0.0
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC), compare=False)


@dataclass
class SendSummary:
    claimed: int = 0
    sent: int = 0
    skipped: int = 0
    failed: int = 0
    retryable: int = 0
    released: int = 0
    in_doubt_verified: int = 0
    requests: int = 0
    seconds: float = 0.0
    aborted: str | None = None
    reasons: dict[str, int] = field(default_factory=dict)
    waiting: int = 0  # in their quiet hours: sent when the window ends
    next_opening: str | None = None  # ISO time when the earliest waiting member's window ends
    # request slots the rate limiter gave up because the event loop reached them too late (a stall on a
    # busy machine): each is capacity lost, and a count here explains a send rate below the one set
    rate_slots_missed: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Recipient:
    member_id: str
    passkit_id: str
    message: str
    in_doubt: bool


@dataclass(frozen=True)
class RowOutcome:
    member_id: str
    status: str
    reason: str | None
    error: str | None
    http_status: int | None
    attempts: int


# {scope} names the sender's rows: the whole campaign (reconciliation), or one batch, read through the
# primary key within the batch's range of member ids (BatchSender.find_batch).
CLAIM_SQL = sql.SQL("""
-- MATERIALIZED: the rows are picked once. As a sub-select joined to the UPDATE, the planner may rescan
-- it inside a nested loop, and every rescan skips the rows this statement has just claimed and picks
-- the next ones: seen claiming a whole batch instead of LIMIT rows.
WITH pick AS MATERIALIZED (
    SELECT member_id, passkit_id, reason FROM push_campaign_recipients
    WHERE {scope}
      AND status = ANY(%(statuses)s)
      -- once per run: a row this run already gave up on waits for the next run (the task's retry,
      -- reconcile); claimed again at once, a PassKit outage kept a sender on its first rows for ever
      AND NOT (status = 'RETRYABLE' AND updated_at >= %(run_started)s)
      AND NOT (%(quiet)s
               AND passpush_in_quiet_hours(%(now)s, coalesce(timezone, 'UTC'), %(quiet_start)s, %(quiet_end)s))
    ORDER BY member_id LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
),
-- The frequency cap again, now: the resolution saw only deliveries made before it, not those of a campaign
-- resolved at the same time or of a row another campaign has on the wire or in doubt (SENDING, RETRYABLE).
-- Claims are serialised (CLAIM_LOCK), so of two campaigns the second to claim a pass sees the first's row.
-- A row of our own that may already have been delivered is verified, never skipped.
capped AS MATERIALIZED (
    SELECT p.member_id,
           %(cap_seconds)s > 0 AND p.reason IS DISTINCT FROM 'in_doubt_unverified' AND (
               EXISTS (SELECT 1 FROM push_campaign_recipients o
                       WHERE o.passkit_id COLLATE "C" = p.passkit_id AND o.status = 'SENT'
                         AND o.sent_at > now() - make_interval(secs => %(cap_seconds)s)
                         AND o.campaign_id <> %(campaign_id)s)
               -- within the cap's window too: a row another campaign left in doubt and never reconciled
               -- (its run marked failed by hand) must not hold this pass back for ever
               OR EXISTS (SELECT 1 FROM push_campaign_recipients o
                          WHERE o.passkit_id COLLATE "C" = p.passkit_id AND o.status IN ('SENDING', 'RETRYABLE')
                            AND o.updated_at > now() - make_interval(secs => %(cap_seconds)s)
                            AND o.campaign_id <> %(campaign_id)s)) AS capped
    FROM pick p
)
UPDATE push_campaign_recipients r
SET status = CASE WHEN c.capped THEN 'SKIPPED' ELSE 'SENDING' END,
    reason = CASE WHEN c.capped THEN 'frequency_cap' ELSE r.reason END,
    updated_at = now()
FROM capped c
WHERE r.campaign_id = %(campaign_id)s AND r.member_id = c.member_id
RETURNING r.member_id, r.passkit_id, r.rendered_message, r.reason = 'in_doubt_unverified', r.status
""")

# Held (to the end of its transaction) by every claim, on every worker: claims of different campaigns are
# serialised, so the frequency cap above sees every row another sender has claimed.
CLAIM_LOCK = 0x70617373  # "pass"

QUIET_SKIP_SQL = sql.SQL("""
UPDATE push_campaign_recipients SET status = 'SKIPPED', reason = 'quiet_hours', updated_at = now()
WHERE {scope}
  AND status = ANY(%(statuses)s)
  AND passpush_in_quiet_hours(%(now)s, coalesce(timezone, 'UTC'), %(quiet_start)s, %(quiet_end)s)
""")

QUIET_WAITING_SQL = sql.SQL("""
SELECT count(*), min(passpush_quiet_hours_end(%(now)s, coalesce(timezone, 'UTC'), %(quiet_end)s))
FROM push_campaign_recipients
WHERE {scope}
  AND status = ANY(%(statuses)s)
  AND passpush_in_quiet_hours(%(now)s, coalesce(timezone, 'UTC'), %(quiet_start)s, %(quiet_end)s)
""")

# Verifying a row may write it (when the first request never landed): the quiet hours hold for it too.
IN_DOUBT_SQL = sql.SQL("""
SELECT member_id, passkit_id, rendered_message FROM push_campaign_recipients
WHERE {scope}
  AND status = 'SENDING'
  AND NOT (%(quiet)s
           AND passpush_in_quiet_hours(%(now)s, coalesce(timezone, 'UTC'), %(quiet_start)s, %(quiet_end)s))
ORDER BY member_id
""")


def _rows_of(batch_no: int | None, member_range: tuple[str, str] | None) -> sql.SQL:
    """The {scope} of a sender: the whole campaign, one batch within its range, or one batch."""
    if batch_no is None:
        return sql.SQL("campaign_id = %(campaign_id)s")
    if member_range is None:
        return sql.SQL("campaign_id = %(campaign_id)s AND batch_no = %(batch_no)s")
    return sql.SQL("campaign_id = %(campaign_id)s AND member_id BETWEEN %(first_member)s AND %(last_member)s"
                   " AND batch_no = %(batch_no)s")


WRITE_SQL = """
UPDATE push_campaign_recipients r
SET status = v.status, reason = v.reason, last_error = v.error, http_status = v.http_status,
    attempts = r.attempts + v.attempts,
    sent_at = CASE WHEN v.status = 'SENT' THEN coalesce(r.sent_at, now()) ELSE r.sent_at END,
    updated_at = now()
FROM unnest(%(member_ids)s::text[], %(statuses)s::text[], %(reasons)s::text[], %(errors)s::text[],
            %(http_statuses)s::int[], %(attempts)s::int[])
     AS v(member_id, status, reason, error, http_status, attempts)
WHERE r.campaign_id = %(campaign_id)s AND r.member_id = v.member_id
  -- A final state is never written over: a sender that outlived its task (a zombie, its retry, reconcile
  -- all working on the rows) must not change a row reconcile has already closed and counted.
  AND r.status IN ('PENDING', 'SENDING', 'RETRYABLE')
"""


class _Backoff:
    """Exponential backoff with jitter, never shorter than the server's Retry-After (or PassKit's 250 ms
    for a 503). The hint is a floor, not the whole wait: repeating every 250 ms would give up on a
    recipient within a second of an outage that PassKit says to wait out."""

    def __init__(self, max_seconds: float) -> None:
        self._exponential = wait_exponential_jitter(initial=0.25, max=max_seconds, jitter=0.25)

    def __call__(self, retry_state: RetryCallState) -> float:
        result = retry_state.outcome.result() if retry_state.outcome else None
        floor = result.retry_after if isinstance(result, SendResult) and result.retry_after is not None else 0.0
        return max(floor, self._exponential(retry_state))


class BatchSender:
    """Sends the rows of one batch (or, for reconciliation, of the whole campaign)."""

    def __init__(self, db: psycopg.AsyncConnection, client: PassKitClient, campaign_id: str,
                 batch_no: int | None, options: SendOptions) -> None:
        self.db = db
        self.client = client
        self.campaign_id = campaign_id
        self.batch_no = batch_no
        self.options = options
        self.summary = SendSummary()
        self._pending: list[RowOutcome] = []
        self._last_flush = time.monotonic()
        self._abort: str | None = None
        self._db_lock = asyncio.Lock()
        self._range: tuple[str, str] | None = None
        self._run_started = datetime.max.replace(tzinfo=UTC)  # the database's clock, read when run() starts

    # ---- database -----------------------------------------------------------------------------

    async def find_batch(self) -> None:
        """Read this sender's rows within its batch's range of member ids (push_campaign_batches,
        migration 032); a batch without a recorded range is read as the campaign's rows of that number."""
        self._range = None
        if self.batch_no is not None:
            rows = await self._execute(
                "SELECT first_member, last_member FROM push_campaign_batches"
                " WHERE campaign_id = %(campaign_id)s AND batch_no = %(batch_no)s",
                {"campaign_id": self.campaign_id, "batch_no": self.batch_no})
            self._range = rows[0] if rows else None

    def _scoped(self, template: sql.SQL) -> sql.Composed:
        return template.format(scope=_rows_of(self.batch_no, self._range))

    async def _execute(self, query: str | sql.Composable, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        async with self._db_lock, self.db.cursor() as cur:
            await cur.execute(query, params)
            return await cur.fetchall() if cur.description else []

    def _scope(self, statuses: Sequence[str]) -> dict[str, Any]:
        """Parameters naming this sender's rows, and the quiet-hours window as of now."""
        quiet = self.options.quiet_hours
        first, last = self._range or (None, None)
        return {"campaign_id": self.campaign_id, "batch_no": self.batch_no, "statuses": list(statuses),
                "first_member": first, "last_member": last,
                "quiet": quiet is not None, "now": self.options.clock(),
                "quiet_start": quiet.start if quiet else None, "quiet_end": quiet.end if quiet else None,
                "cap_seconds": self.options.frequency_cap_seconds, "run_started": self._run_started}

    async def _claim(self, statuses: Sequence[str], limit: int) -> list[Recipient]:
        while True:  # until a row to send is claimed, or none is left (a chunk may be all capped)
            async with self._db_lock, self.db.transaction(), self.db.cursor() as cur:
                await cur.execute("SELECT pg_advisory_xact_lock(%s)", (CLAIM_LOCK,))
                await cur.execute(self._scoped(CLAIM_SQL), {**self._scope(statuses), "limit": limit})
                rows = await cur.fetchall()
            capped = sum(1 for r in rows if r[4] == "SKIPPED")
            if capped:
                self.summary.skipped += capped
                self.summary.reasons["frequency_cap"] = self.summary.reasons.get("frequency_cap", 0) + capped
            if not rows or capped < len(rows):
                break
        # a RETRYABLE row whose earlier PUT may have landed is still in doubt: verify it, never skip it
        return [Recipient(r[0], r[1], r[2], in_doubt=bool(r[3])) for r in rows if r[4] == "SENDING"]

    async def _in_doubt(self) -> list[Recipient]:
        rows = await self._execute(self._scoped(IN_DOUBT_SQL), self._scope(()))
        return [Recipient(r[0], r[1], r[2], in_doubt=True) for r in rows]

    async def _check_abort(self) -> None:
        rows = await self._execute("SELECT abort_reason FROM push_campaigns WHERE id = %(id)s",
                                   {"id": self.campaign_id})
        if rows and rows[0][0]:
            self._abort = self._abort or rows[0][0]

    async def _record_abort(self, reason: str) -> None:
        await self._execute(
            "UPDATE push_campaigns SET abort_reason = coalesce(abort_reason, %(reason)s), updated_at = now()"
            " WHERE id = %(id)s", {"reason": reason, "id": self.campaign_id})

    async def flush(self, force: bool = False) -> None:
        due = len(self._pending) >= FLUSH_EVERY_ROWS or time.monotonic() - self._last_flush >= FLUSH_EVERY_SECONDS
        if not self._pending or not (force or due):
            return
        batch, self._pending = self._pending, []
        self._last_flush = time.monotonic()
        await self._execute(WRITE_SQL, {
            "campaign_id": self.campaign_id,
            "member_ids": [o.member_id for o in batch],
            "statuses": [o.status for o in batch],
            "reasons": [o.reason for o in batch],
            "errors": [o.error for o in batch],
            "http_statuses": [o.http_status for o in batch],
            "attempts": [o.attempts for o in batch],
        })

    # ---- one recipient ---------------------------------------------------------------------

    def _should_retry(self, result: SendResult) -> bool:
        return result.outcome is Outcome.RETRYABLE and self._abort is None

    async def _attempt(self, recipient: Recipient) -> SendResult:
        self.summary.requests += 1
        return await self._send_once(recipient)

    async def _attempts(self, recipient: Recipient) -> tuple[SendResult, int, bool]:
        """The last answer, the number of attempts, and whether an earlier attempt may have written."""
        # Most sends succeed at once: only a recipient whose first answer was transient pays for tenacity.
        first = await self._attempt(recipient)
        if self.options.max_attempts <= 1 or not self._should_retry(first):
            return first, 1, False
        return await self._retry(recipient, first)

    async def _retry(self, recipient: Recipient, first: SendResult) -> tuple[SendResult, int, bool]:
        """Tenacity owns the policy from here; its attempt 1 is the answer already in hand."""
        attempts = 1
        pending: SendResult | None = first
        results: list[SendResult] = []

        async def once() -> SendResult:
            nonlocal attempts, pending
            if pending is not None:
                result, pending = pending, None
            else:
                attempts += 1
                result = await self._attempt(recipient)
            results.append(result)
            return result

        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.options.max_attempts),
            wait=_Backoff(self.options.max_backoff_seconds),
            retry=retry_if_result(self._should_retry),
            retry_error_callback=lambda state: state.outcome.result() if state.outcome else None,
        )
        result = await retrying(once)
        return result, attempts, any(earlier.in_doubt for earlier in results[:-1])

    async def _send_once(self, recipient: Recipient) -> SendResult:
        if recipient.in_doubt and self.client.settings.metadata_update == "merge":
            # merge mode writes blindly; for a row whose first request may have landed, read first.
            try:
                member = await self.client.get_member(recipient.passkit_id)
            except PassKitError as err:
                outcome = classify_status(err.status) if err.status else Outcome.RETRYABLE
                if outcome is Outcome.SENT:  # a 2xx whose body was not a member: nothing known, nothing written
                    outcome = Outcome.RETRYABLE
                return SendResult(outcome, err.status, str(err)[:200], err.retry_after)
            if (member.get("metaData") or {}).get(self.client.settings.metadata_key) == recipient.message:
                return SendResult(Outcome.UNCHANGED, 200, None, passkit_id=recipient.passkit_id)
        return await self.client.set_marketing_message(message=recipient.message, passkit_id=recipient.passkit_id)

    def _outcome(self, recipient: Recipient, result: SendResult, attempts: int,
                 earlier_in_doubt: bool = False) -> RowOutcome:
        in_doubt = recipient.in_doubt or earlier_in_doubt or result.in_doubt
        status, reason = {
            Outcome.SENT: ("SENT", None),
            # The pass already shows the text. After a crash or an earlier PUT that got no clear answer our
            # own write may be why (a dropped answer to an applied PUT): count it as delivered, not skipped.
            # An earlier attempt that wrote nothing (a GET answered 503, a PUT answered 429) is no reason.
            Outcome.UNCHANGED: ("SENT", "confirmed_in_doubt") if in_doubt
            else ("SKIPPED", "already_showing"),
            # A request that may have been applied is remembered on the row: whoever claims it next (this
            # task, a resumed one, reconcile) verifies it like a row left SENDING, and reconcile closes it as
            # FAILED in_doubt_unverified, not as a plain failure.
            Outcome.RETRYABLE: ("RETRYABLE", "in_doubt_unverified" if in_doubt else "retries_exhausted"),
            Outcome.PERMANENT: ("FAILED", f"http_{result.http_status}" if result.http_status else "rejected"),
            Outcome.FATAL: ("RETRYABLE", "campaign_aborted"),  # never applied: reconcile cancels it
        }[result.outcome]
        return RowOutcome(recipient.member_id, status, reason, result.error, result.http_status, attempts)

    async def deliver(self, recipient: Recipient) -> None:
        if self._abort is not None:
            self._release(recipient)
            return
        try:
            result, attempts, earlier_in_doubt = await self._attempts(recipient)
        except Exception as err:  # a bug or an unexpected library error must not lose the row's state
            log.exception("unexpected error sending to member %s", recipient.member_id)
            result, attempts = SendResult(Outcome.RETRYABLE, None, f"{type(err).__name__}: {err}"[:200]), 1
            earlier_in_doubt = False
        if result.outcome is Outcome.FATAL:
            self._abort = self._abort or f"PassKit refused the credentials ({result.error})"
            self._release(recipient)
            return
        row = self._outcome(recipient, result, attempts, earlier_in_doubt)
        self._count(row, recipient)
        self._pending.append(row)

    def _release(self, recipient: Recipient) -> None:
        """Never sent: back to PENDING (or SENDING stays in doubt if it was), so nothing is lost."""
        status = "SENDING" if recipient.in_doubt else "PENDING"
        self._pending.append(RowOutcome(recipient.member_id, status, None, None, None, 0))
        self.summary.released += 1

    def _count(self, row: RowOutcome, recipient: Recipient) -> None:
        if row.status == "SENT":
            self.summary.sent += 1
            self.summary.in_doubt_verified += row.reason == "confirmed_in_doubt"
        elif row.status == "SKIPPED":
            self.summary.skipped += 1
        elif row.status == "FAILED":
            self.summary.failed += 1
        else:
            self.summary.retryable += 1
        if row.reason and row.status != "SENT":
            self.summary.reasons[row.reason] = self.summary.reasons.get(row.reason, 0) + 1

    # ---- the batch ---------------------------------------------------------------------------

    async def _apply_quiet_hours(self, statuses: Sequence[str]) -> None:
        quiet = self.options.quiet_hours
        if quiet is None:
            return
        if quiet.policy == "skip":
            await self._execute(self._scoped(QUIET_SKIP_SQL), self._scope(statuses))
            return
        # rows left in doubt by a crash wait for their morning too (they are verified then)
        rows = await self._execute(self._scoped(QUIET_WAITING_SQL), self._scope([*statuses, "SENDING"]))
        waiting, opening = rows[0] if rows else (0, None)
        self.summary.waiting = int(waiting)
        self.summary.next_opening = opening.isoformat() if opening else None
        if waiting:
            log.info("batch %s: %d members are in their quiet hours; the first window ends at %s",
                     self.batch_no, waiting, self.summary.next_opening)

    async def run(self, statuses: Sequence[str] = ("PENDING", "RETRYABLE")) -> SendSummary:
        started = time.monotonic()
        self._run_started = (await self._execute("SELECT now()", {}))[0][0]
        await self.find_batch()
        await self._check_abort()
        if self.options.quiet_hours and self.options.quiet_hours.policy == "skip" and not self._abort:
            await self._apply_quiet_hours(statuses)
        in_flight: set[asyncio.Task[None]] = set()
        progress = _Progress(self, started)
        queue: list[Recipient] = [] if self._abort else await self._in_doubt()
        while self._abort is None:
            if not queue:
                queue = await self._claim(statuses, self.options.max_in_flight)
                self.summary.claimed += len(queue)
                if not queue:
                    break
            while queue and len(in_flight) < self.options.max_in_flight:
                task = asyncio.create_task(self.deliver(queue.pop(0)))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
            if in_flight:
                await asyncio.wait(in_flight, timeout=FLUSH_EVERY_SECONDS, return_when=asyncio.FIRST_COMPLETED)
            await self.flush()
            await self._check_abort_periodically(progress)
            progress.maybe_log()
        for recipient in queue:
            self._release(recipient)
        while in_flight:  # the last rows: keep writing answers back, so a crash loses only what is in flight
            await asyncio.wait(in_flight, timeout=FLUSH_EVERY_SECONDS, return_when=asyncio.FIRST_COMPLETED)
            await self.flush()
            progress.maybe_log()
        await self.flush(force=True)
        if self.options.quiet_hours and self.options.quiet_hours.policy == "wait" and not self._abort:
            await self._apply_quiet_hours(statuses)
        self.summary.seconds = round(time.monotonic() - started, 3)
        self.summary.aborted = self._abort
        progress.log()
        if self._abort:
            await self._record_abort(self._abort)
        return self.summary

    async def _check_abort_periodically(self, progress: _Progress) -> None:
        if progress.due_abort_check():
            await self._check_abort()


class _Progress:
    """Running totals in the task log every few seconds: sent / failed / remaining, current rate."""

    def __init__(self, sender: BatchSender, started: float) -> None:
        self.sender = sender
        self.started = started
        self.last_log = started
        self.last_sent = 0
        self.last_abort_check = started

    def due_abort_check(self) -> bool:
        now = time.monotonic()
        if now - self.last_abort_check >= 1.0:
            self.last_abort_check = now
            return True
        return False

    def maybe_log(self) -> None:
        if time.monotonic() - self.last_log >= PROGRESS_EVERY_SECONDS:
            self.log()

    def log(self) -> None:
        now = time.monotonic()
        s = self.sender.summary
        rate = (s.sent - self.last_sent) / max(now - self.last_log, 1e-6)
        log.info("batch %s: sent %d, skipped %d, failed %d, retrying %d, claimed %d, %.0f sends/s now",
                 self.sender.batch_no, s.sent, s.skipped, s.failed, s.retryable, s.claimed, rate)
        self.last_log, self.last_sent = now, s.sent


async def send_async(conninfo: str, campaign_id: str, batch_no: int | None, settings: PassKitSettings,
                     options: SendOptions, statuses: Sequence[str] = ("PENDING", "RETRYABLE")) -> SendSummary:
    async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True,
                                                     application_name="passpush-sender") as db, \
            await psycopg.AsyncConnection.connect(conninfo, autocommit=True,
                                                  application_name="passpush-ratelimit") as limiter_db:
        limiter = GlobalRateLimiter(limiter_db, limiter_key(settings.base_url, settings.api_key),
                                    options.rate_limit_per_second)
        async with PassKitClient(settings, before_request=limiter.acquire) as client:
            sender = BatchSender(db, client, campaign_id, batch_no, options)
            summary = await sender.run(statuses)
    summary.rate_slots_missed = limiter.dropped
    # what to look at when PassKit answered 429 or the rate fell short of the one set
    log.info("batch %s: rate limiter made %d reservations (longest round trip %.0f ms) and gave up %d of "
             "their %d slots, reached more than %.0f ms late", batch_no, limiter.reservations,
             limiter.longest_round_trip * 1000, limiter.dropped, limiter.reservations * limiter.window,
             STALE_AFTER_SECONDS * 1000)
    return summary


@contextmanager
def _frozen_heap() -> Iterator[None]:
    """Keep the garbage collector off the objects that exist before sending starts.

    An Airflow task process holds a large heap (Airflow itself); every full collection walks all of it,
    and on a loaded machine that held the event loop for up to half a second mid-batch, after which the
    requests that had waited left together. Frozen objects are skipped by collections until unfrozen;
    what the sender allocates is collected as usual.
    """
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def send_batch(conninfo: str, campaign_id: str, batch_no: int | None, settings: PassKitSettings,
               options: SendOptions) -> SendSummary:
    """Send one batch; raise CampaignAbortedError when PassKit refused the credentials."""
    with _frozen_heap():
        summary = asyncio.run(send_async(conninfo, campaign_id, batch_no, settings, options))
    if summary.aborted:
        raise CampaignAbortedError(f"campaign {campaign_id} stopped: {summary.aborted}")
    return summary
