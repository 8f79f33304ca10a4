"""The promises every reliability test ends with, checked against the database and the emulator's own log.

1. Every recipient is in exactly one final state (one row per member, a final status).
2. The counts on ``push_campaigns`` equal the recipient table, and the campaign status is final.
3. Nobody is buzzed twice: at most one lock-screen notification per pass (the emulator's summary and
   its event log agree).
4. What phones saw matches the record: every SENT row has its update in the emulator's log with its
   own rendered text, and every update in the log belongs to a recipient that is SENT (or FAILED in
   doubt: a request that timed out or was cut may still have landed), never to a skipped, held-out or
   cancelled member, nor to anyone outside the audience. Google passes update silently (no text in
   the log): their pass must show the row's text.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.rows import dict_row

from passpush.campaigns import FINAL_STATUSES
from passpush.emulator.control import EmulatorControl

FINAL_ROW_STATES = frozenset({"SENT", "FAILED", "SKIPPED", "HELD_OUT", "CANCELLED"})
# FAILED rows whose request may have reached PassKit before the answer was lost.
IN_DOUBT_REASONS = frozenset({"in_doubt_unverified", "retries_exhausted"})
METADATA_KEY = "marketingMessage"
COUNT_COLUMNS = {"sent_count": "SENT", "failed_count": "FAILED", "skipped_count": "SKIPPED",
                 "cancelled_count": "CANCELLED"}


@dataclass(frozen=True)
class Checked:
    """What the invariants saw, for the test's own assertions."""

    campaign: dict[str, Any]
    by_status: dict[str, int]
    by_reason: dict[tuple[str, str | None], int]
    notifications: int
    silent_updates: int

    def count(self, status: str) -> int:
        return self.by_status.get(status, 0)


def _campaign(db: psycopg.Connection, campaign_id: str) -> dict[str, Any]:
    with db.cursor(row_factory=dict_row) as cur:
        row = cur.execute("SELECT c.*, p.passkit_program_id FROM push_campaigns c JOIN programs p"
                          " ON p.id = c.program_id WHERE c.id = %s", (campaign_id,)).fetchone()
    assert row is not None, f"no campaign {campaign_id}"
    return row


def _recipients(db: psycopg.Connection, campaign_id: str) -> list[dict[str, Any]]:
    with db.cursor(row_factory=dict_row) as cur:
        return cur.execute("SELECT member_id, passkit_id, wallet, status, reason, rendered_message"
                           " FROM push_campaign_recipients WHERE campaign_id = %s", (campaign_id,)).fetchall()


def _check_rows(campaign: dict[str, Any], rows: list[dict[str, Any]]) -> Counter[str]:
    unfinished = [(r["member_id"], r["status"]) for r in rows if r["status"] not in FINAL_ROW_STATES]
    assert not unfinished, f"recipients not in a final state: {unfinished[:10]}"
    members = Counter(r["member_id"] for r in rows)
    assert max(members.values(), default=1) == 1, "a member has two recipient rows"
    by_status = Counter(r["status"] for r in rows)
    assert campaign["status"] in FINAL_STATUSES, f"campaign ended {campaign['status']!r}"
    recorded = {column: campaign[column] for column in ("recipient_count", *COUNT_COLUMNS)}
    counted = {"recipient_count": len(rows), **{c: by_status.get(s, 0) for c, s in COUNT_COLUMNS.items()}}
    assert recorded == counted, f"push_campaigns says {recorded}, the recipient table {counted}"
    return by_status


def _check_wallet_log(control: EmulatorControl, program: str, rows: list[dict[str, Any]]) -> tuple[int, int]:
    events = [e for e in control.notifications(kind="all", program_id=program)
              if e["kind"] in ("notification", "silent")]
    buzzes = Counter(e["passId"] for e in events if e["kind"] == "notification")
    summary = control.notification_summary(program)
    assert summary["max_per_member"] <= 1, f"buzzed more than once: {summary['per_member_over_1'][:5]}"
    assert max(buzzes.values(), default=0) <= 1 and summary["total"] == sum(buzzes.values())
    by_pass = {r["passkit_id"]: r for r in rows if r["passkit_id"]}
    for event in events:
        row = by_pass.get(event["passId"])
        assert row is not None, f"{event['passId']} was updated but is not a recipient"
        if event["text"] is not None:  # a silent Google update records no text: checked on the pass below
            assert event["text"] == row["rendered_message"], (event, row)
        in_doubt = row["status"] == "FAILED" and row["reason"] in IN_DOUBT_REASONS
        assert row["status"] == "SENT" or in_doubt, f"{row['member_id']} updated but recorded {row['status']}"
    updated = {e["passId"] for e in events}
    missing = [r["member_id"] for r in rows if r["status"] == "SENT" and r["passkit_id"] not in updated]
    assert not missing, f"recorded SENT but no update reached the pass: {missing[:10]}"
    for row in rows:
        if row["status"] == "SENT" and row["wallet"] == "google":
            shown = control.member(row["passkit_id"])["metaData"].get(METADATA_KEY)
            assert shown == row["rendered_message"], (row, shown)
    return sum(buzzes.values()), len(events) - sum(buzzes.values())


def assert_invariants(db: psycopg.Connection, control: EmulatorControl, campaign_id: str) -> Checked:
    """Assert every promise for one campaign; return what was seen."""
    campaign = _campaign(db, campaign_id)
    rows = _recipients(db, campaign_id)
    by_status = _check_rows(campaign, rows)
    notified, silent = _check_wallet_log(control, campaign["passkit_program_id"], rows)
    reasons = Counter((r["status"], r["reason"]) for r in rows if r["status"] in ("FAILED", "CANCELLED"))
    return Checked(campaign, dict(by_status), dict(reasons), notified, silent)
