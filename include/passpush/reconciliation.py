"""Close a campaign: one bounded retry pass, final states for every row, counts on push_campaigns.

Runs after all batches whatever their state. Everything it writes is recomputed from the
recipient table, so clearing and re-running it (or the whole DAG run) converges on the same result.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any

import psycopg

from passpush import campaigns

log = logging.getLogger(__name__)

FINALIZE_SQL = """
UPDATE push_campaign_recipients
SET status = CASE WHEN status = 'PENDING' THEN 'CANCELLED' ELSE 'FAILED' END,
    reason = CASE
        WHEN status = 'PENDING' THEN %(cancel_reason)s
        WHEN status = 'SENDING' THEN 'in_doubt_unverified'
        ELSE coalesce(reason, 'retries_exhausted')
    END,
    updated_at = now()
WHERE campaign_id = %(campaign_id)s AND status IN ('PENDING', 'SENDING', 'RETRYABLE')
"""

NOT_CONFIRMED_REASON = ("never confirmed: the approval was rejected or had no answer within its time-out "
                        "(see the run's approve_send task)")

COUNTS_SQL = """
SELECT count(*),
       count(*) FILTER (WHERE status = 'SENT'),
       count(*) FILTER (WHERE status = 'FAILED'),
       count(*) FILTER (WHERE status = 'SKIPPED'),
       count(*) FILTER (WHERE status = 'CANCELLED'),
       count(*) FILTER (WHERE status = 'HELD_OUT')
FROM push_campaign_recipients WHERE campaign_id = %s
"""


@dataclass
class CampaignResult:
    campaign_id: str
    status: str
    targeted: int
    sent: int
    failed: int
    skipped: int
    cancelled: int
    held_out: int
    failures_by_reason: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def retryable_left(conn: psycopg.Connection, campaign_id: str) -> int:
    row = conn.execute(
        "SELECT count(*) FROM push_campaign_recipients WHERE campaign_id = %s"
        " AND status IN ('PENDING', 'SENDING', 'RETRYABLE')", (campaign_id,)).fetchone()
    return int(row[0]) if row else 0


def final_status(campaign: dict[str, Any], sent: int, failed: int, cancelled: int) -> str:
    if campaign["dry_run"]:
        return "DRY_RUN"
    if campaign["status"] in ("FAILED", "CANCELLED"):  # decided before sending (validation, confirmation)
        return str(campaign["status"])
    if campaign["abort_reason"]:
        return "FAILED"
    if not campaign["confirmed_at"]:  # approval rejected or timed out
        return "CANCELLED"
    if failed or cancelled:
        return "COMPLETED_WITH_ERRORS"
    return "COMPLETED"


def finalize(conn: psycopg.Connection, campaign_id: str) -> CampaignResult:
    """Give every row a final state and write the counts and status; idempotent."""
    campaign = campaigns.get_campaign(conn, campaign_id)
    if campaign["dry_run"]:
        cancel_reason = "dry_run"
    elif campaign["status"] == "CANCELLED" or campaign["abort_reason"]:
        cancel_reason = "campaign_stopped"
    elif not campaign["confirmed_at"]:
        cancel_reason = "not_confirmed"
    else:
        cancel_reason = "not_sent"
    with conn.transaction():
        # a dry run's would-be recipients too: left PENDING, its counts did not add up to those targeted
        conn.execute(FINALIZE_SQL, {"campaign_id": campaign_id, "cancel_reason": cancel_reason})
        row = conn.execute(COUNTS_SQL, (campaign_id,)).fetchone()
        assert row is not None
        targeted, sent, failed, skipped, cancelled, held_out = (int(v) for v in row)
        status = final_status(campaign, sent, failed, cancelled)
        # the only way left to end unconfirmed: a task that failed records its own reason (the DAG's callback)
        reason = NOT_CONFIRMED_REASON if cancel_reason == "not_confirmed" else None
        conn.execute(
            """
            UPDATE push_campaigns
            SET status = %s, recipient_count = %s, sent_count = %s, failed_count = %s, skipped_count = %s,
                cancelled_count = %s, abort_reason = coalesce(abort_reason, %s),
                finished_at = coalesce(finished_at, now()), updated_at = now()
            WHERE id = %s
            """,
            (status, targeted, sent, failed, skipped, cancelled, reason, campaign_id),
        )
    reasons = dict(conn.execute(
        "SELECT coalesce(reason, 'unknown'), count(*) FROM push_campaign_recipients"
        " WHERE campaign_id = %s AND status IN ('FAILED', 'CANCELLED') GROUP BY 1 ORDER BY 2 DESC",
        (campaign_id,)).fetchall())
    result = CampaignResult(campaign_id, status, targeted, sent, failed, skipped, cancelled, held_out, reasons)
    log.info("campaign %s %s: targeted %d, sent %d, failed %d, skipped %d, cancelled %d",
             campaign_id, status, targeted, sent, failed, skipped, cancelled)
    if reasons:
        log.info("failures by reason:\n%s", format_table(reasons))
    return result


def format_table(counts: dict[str, int]) -> str:
    width = max(len(k) for k in counts)
    return "\n".join(f"  {reason:<{width}}  {count:>8}" for reason, count in counts.items())
