"""The ``push_campaigns`` row: created once per DAG run, updated as the campaign moves on.

Statuses: PENDING -> PROCESSING -> COMPLETED | COMPLETED_WITH_ERRORS | FAILED | CANCELLED,
and DRY_RUN for a preview that sends nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from passpush.campaign_spec import CampaignSpec
from passpush.errors import CampaignConfigError

FINAL_STATUSES = ("COMPLETED", "COMPLETED_WITH_ERRORS", "FAILED", "CANCELLED", "DRY_RUN")


@dataclass(frozen=True)
class Program:
    id: str
    name: str
    passkit_program_id: str
    timezone: str


def load_program(conn: psycopg.Connection, program_id: str) -> Program:
    row = conn.execute(
        "SELECT id::text, name, passkit_program_id, timezone FROM programs WHERE id = %s", (program_id,)
    ).fetchone()
    if row is None:
        raise CampaignConfigError(f"unknown program {program_id!r}: no row in programs has this id")
    return Program(*row)


def create_campaign(conn: psycopg.Connection, spec: CampaignSpec, *, dag_id: str, dag_run_id: str) -> str:
    """Insert the campaign for this DAG run, or return the one a previous try already created.

    Its id grows with time (migration 033), so its recipients are written at the right edge of the
    recipient table's primary key.
    """
    load_program(conn, spec.program_id)
    options = {k: v for k, v in spec.to_record().items()
               if k not in {"program_id", "name", "message", "audience", "segment", "segment_params",
                            "sql", "csv_path"}}
    audience = {"mode": spec.audience, "segment": spec.segment, "segment_params": spec.segment_params,
                "sql": spec.sql, "csv_path": spec.csv_path}
    row = conn.execute(
        """
        INSERT INTO push_campaigns (id, program_id, name, message_text, target_query, csv_upload_url, status,
                                    audience, options, dry_run, dag_id, dag_run_id, recurring_key, is_test,
                                    holdout_percent)
        VALUES (passpush_new_campaign_id(), %s, %s, %s, %s, %s, 'PENDING', %s, %s, %s, %s, %s, %s, %s, %s)
        ON CONFLICT (dag_id, dag_run_id) DO UPDATE SET updated_at = now()
        RETURNING id::text
        """,
        (spec.program_id, spec.name, spec.message, spec.describe_audience(), spec.csv_path,
         Jsonb(audience), Jsonb(options), spec.dry_run, dag_id, dag_run_id, spec.recurring_key, spec.is_test,
         spec.holdout_percent),
    ).fetchone()
    assert row is not None
    return row[0]


def get_campaign(conn: psycopg.Connection, campaign_id: str) -> dict[str, Any]:
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute("SELECT * FROM push_campaigns WHERE id = %s", (campaign_id,)).fetchone()
    if row is None:
        raise CampaignConfigError(f"unknown campaign {campaign_id!r}")
    return row


def spec_of(campaign: dict[str, Any]) -> CampaignSpec:
    """Rebuild the spec stored at creation, so later tasks never re-read the trigger conf."""
    audience, options = campaign["audience"], campaign["options"]
    return CampaignSpec(
        program_id=str(campaign["program_id"]),
        name=campaign["name"],
        message=campaign["message_text"],
        audience=audience["mode"],
        segment=audience.get("segment"),
        segment_params=audience.get("segment_params") or {},
        sql=audience.get("sql"),
        csv_path=audience.get("csv_path"),
        **{**options, "test_recipients": tuple(options.get("test_recipients") or ())},
    )


def set_status(conn: psycopg.Connection, campaign_id: str, status: str, **fields: Any) -> None:
    assignments = ", ".join(f"{name} = %({name})s" for name in fields)
    values = {k: Jsonb(v) if isinstance(v, dict) else v for k, v in fields.items()}
    conn.execute(
        f"UPDATE push_campaigns SET status = %(status)s, updated_at = now()"
        f"{', ' + assignments if assignments else ''} WHERE id = %(id)s",
        {"status": status, "id": campaign_id, **values},
    )


def fail_undecided(conn: psycopg.Connection, campaign_id: str, reason: str) -> bool:
    """FAILED with `reason` if the campaign has no outcome, no recorded reason and no permission to send yet."""
    cur = conn.execute(
        "UPDATE push_campaigns SET status = 'FAILED', abort_reason = %s, updated_at = now()"
        " WHERE id = %s AND abort_reason IS NULL AND confirmed_at IS NULL AND status <> ALL(%s)",
        (reason, campaign_id, list(FINAL_STATUSES)),
    )
    return cur.rowcount == 1


def mark_started(conn: psycopg.Connection, campaign_id: str) -> None:
    conn.execute(
        "UPDATE push_campaigns SET status = 'PROCESSING', started_at = coalesce(started_at, now()),"
        " updated_at = now() WHERE id = %s AND status IN ('PENDING', 'PROCESSING')",
        (campaign_id,),
    )


def confirm(conn: psycopg.Connection, campaign_id: str, count: int, confirmed_by: str) -> None:
    """Record that sending was allowed, and for how many; reconcile cancels runs that never got here."""
    conn.execute(
        "UPDATE push_campaigns SET confirmed_at = coalesce(confirmed_at, now()), confirmed_count = %s,"
        " confirmed_by = %s, updated_at = now() WHERE id = %s",
        (count, confirmed_by, campaign_id),
    )


def record_failure(conn: psycopg.Connection, campaign_id: str, error: Exception) -> None:
    """A validation failure ends the campaign before any push; keep the message for the history."""
    conn.execute(
        "UPDATE push_campaigns SET status = 'FAILED', abort_reason = %s, finished_at = now(), updated_at = now()"
        " WHERE id = %s",
        (f"{type(error).__name__}: {error}", campaign_id),
    )
