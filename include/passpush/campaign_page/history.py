"""The campaign history and one campaign's detail, read from the loyalty database.

Counts on ``push_campaigns`` are written when a campaign ends; while it runs, its progress is
counted from ``push_campaign_recipients``. Runs launched but not yet started by Airflow (no
campaign row yet) are listed from Airflow's metadata so a launch shows up at once. The lift
report comes from a ``push_campaign_lift`` table or view when the loyalty database has one.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from sqlalchemy.orm import Session

from passpush.campaign_page import airflow_runs, queries
from passpush.campaign_page.settings import DAG_ID, PREVIEW_DAG_ID
from passpush.campaign_spec import parse_conf
from passpush.campaigns import FINAL_STATUSES
from passpush.errors import PassPushError

LIFT_RELATION = "push_campaign_lift"
LIFT_ROW_LIMIT = 200
# Chart resolution by how long the campaign sent for: at most a few hundred bars.
BUCKETS = (("second", 1, 600), ("minute", 60, 12 * 3600), ("hour", 3600, None))
# The detail's columns of push_campaigns, named: ``c.*`` would also send ``audience`` and ``options``, which
# hold the custom SQL and the test recipients' member ids.
CAMPAIGN_COLUMNS = ("id", "program_id", "name", "message_text", "target_query", "status", "dry_run", "is_test",
                    "recurring_key", "holdout_percent", "recipient_count", "sent_count", "failed_count",
                    "skipped_count", "cancelled_count", "confirmed_at", "confirmed_count", "confirmed_by",
                    "abort_reason", "created_at", "started_at", "finished_at", "updated_at", "dag_id",
                    "dag_run_id", "preview")
# What a resolution stores about members themselves (ids, personalised texts): shown only to users who
# may trigger push_campaign, as the preview itself is (auth.py).
MEMBER_PREVIEW_KEYS = ("samples", "unknown_sample")
# How many test recipients a campaign had, without their ids (history.sql spells it the same way).
TEST_RECIPIENTS = ("CASE WHEN jsonb_typeof(c.options->'test_recipients') = 'array'"
                   " THEN jsonb_array_length(c.options->'test_recipients') ELSE 0 END AS test_recipients")


class CampaignNotFoundError(PassPushError):
    status_code = 404


def _rows(conn: psycopg.Connection, query: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(queries.load(query), params).fetchall()


def list_programs(conn: psycopg.Connection) -> list[dict[str, Any]]:
    return _rows(conn, "programs", {})


def audience_shown(description: str | None, mode: str | None, test_recipients: int, *,
                   members: bool) -> str | None:
    """The audience's description, without the custom SQL or test recipients' ids unless ``members``."""
    if members:
        return description
    if test_recipients:
        return f"Test send to {test_recipients} members"
    if mode == "sql":
        return "Custom SQL (shown to users who may trigger push_campaign)"
    return description


def list_campaigns(conn: psycopg.Connection, session: Session, *, limit: int, offset: int,
                   program_id: str | None, members: bool) -> dict[str, Any]:
    rows = _rows(conn, "history", {"preview_dag_id": PREVIEW_DAG_ID, "program_id": program_id,
                                   "limit": limit, "offset": offset})
    total = rows[0]["total"] if rows else (0 if offset == 0 else None)
    for row in rows:
        del row["total"]
        row["audience"] = audience_shown(row["audience"], row.pop("audience_mode"), row.pop("test_recipients"),
                                         members=members)
    _add_live_counts(conn, rows)
    _add_run_states(session, rows)
    queued = _queued_runs(conn, session, program_id, members=members) if offset == 0 else []
    return {"campaigns": rows, "queued_runs": queued, "total": total, "limit": limit, "offset": offset}


def _add_live_counts(conn: psycopg.Connection, rows: list[dict[str, Any]]) -> None:
    running = {row["id"]: row for row in rows if row["status"] not in FINAL_STATUSES}
    for row in rows:
        row["final"] = row["id"] not in running
        row["pending"] = 0
    if running:
        for live in _rows(conn, "live_counts", {"ids": list(running)}):
            running[live.pop("id")].update(live)


def _add_run_states(session: Session, rows: list[dict[str, Any]]) -> None:
    states = airflow_runs.run_states(session, [r["dag_run_id"] for r in rows if r["dag_id"] == DAG_ID])
    for row in rows:
        recorded = row["dag_id"] == DAG_ID and row["dag_run_id"]
        row["run_state"] = states.get(row["dag_run_id"]) if recorded else None
        row["run_url"] = airflow_runs.run_url(row["dag_run_id"]) if recorded else None


def _queued_runs(conn: psycopg.Connection, session: Session, program_id: str | None, *,
                 members: bool) -> list[dict[str, Any]]:
    """Active runs whose first task has not created the campaign row yet."""
    runs = airflow_runs.active_runs(session)
    if program_id:
        runs = [r for r in runs if str(r["conf"].get("program_id")) == program_id]
    if not runs:
        return []
    recorded = {r[0] for r in conn.execute(
        "SELECT dag_run_id FROM push_campaigns WHERE dag_id = %s AND dag_run_id = ANY(%s)",
        (DAG_ID, [r["run_id"] for r in runs]))}
    names = dict(conn.execute("SELECT id::text, name FROM programs WHERE id::text = ANY(%s)",
                              ([str(r["conf"].get("program_id")) for r in runs],)).fetchall())
    return [_queued_entry(run, names, members=members) for run in runs if run["run_id"] not in recorded]


def _queued_entry(run: dict[str, Any], program_names: dict[str, str], *, members: bool) -> dict[str, Any]:
    conf = run["conf"]
    try:
        spec = parse_conf(conf)
        audience = audience_shown(spec.describe_audience(), spec.audience, len(spec.test_recipients),
                                  members=members)
    except PassPushError:
        audience = str(conf.get("audience") or "")
    return {"run_id": run["run_id"], "run_state": run["state"],
            "run_url": airflow_runs.run_url(run["run_id"]), "name": conf.get("name"),
            "program_id": conf.get("program_id"),
            "program_name": program_names.get(str(conf.get("program_id"))), "audience": audience,
            "dry_run": bool(conf.get("dry_run")), "created_at": run["created_at"],
            "triggered_by": run["triggered_by"]}


def campaign_detail(conn: psycopg.Connection, session: Session, campaign_id: uuid.UUID, *,
                    members: bool) -> dict[str, Any]:
    """One campaign; ``members``: whether the user may see member data (may trigger push_campaign)."""
    campaign = _campaign(conn, campaign_id, members=members)
    outcomes = _rows(conn, "outcomes", {"campaign_id": campaign_id})
    by_status: dict[str, int] = {}
    for outcome in outcomes:
        by_status[outcome["status"]] = by_status.get(outcome["status"], 0) + outcome["count"]
    preview = campaign.pop("preview", None)
    run_id = campaign["dag_run_id"] if campaign["dag_id"] == DAG_ID else None
    return {
        "campaign": campaign,
        "final": campaign["status"] in FINAL_STATUSES,
        "counts": by_status,
        "failures": [o for o in outcomes if o["status"] in ("FAILED", "CANCELLED", "RETRYABLE")],
        "skipped": [o for o in outcomes if o["status"] == "SKIPPED"],
        "sends": sends_over_time(conn, campaign_id),
        "preview": _preview_shown(preview, members=members),
        "lift": lift_report(conn, campaign_id),
        "run": _run(session, run_id) if run_id else None,
    }


def _campaign(conn: psycopg.Connection, campaign_id: uuid.UUID, *, members: bool) -> dict[str, Any]:
    query = sql.SQL(
        "SELECT {columns}, p.name AS program_name, c.audience->>'mode' AS audience_mode, {test_recipients}"
        " FROM push_campaigns c LEFT JOIN programs p ON p.id = c.program_id"
        " WHERE c.id = %s AND c.dag_id IS DISTINCT FROM %s").format(
        columns=sql.SQL(", ").join(sql.Identifier("c", name) for name in CAMPAIGN_COLUMNS),
        test_recipients=sql.SQL(TEST_RECIPIENTS))
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(query, (campaign_id, PREVIEW_DAG_ID)).fetchone()
    if row is None:
        raise CampaignNotFoundError(f"no campaign {campaign_id} in push_campaigns")
    row["target_query"] = audience_shown(row["target_query"], row.pop("audience_mode"), row.pop("test_recipients"),
                                         members=members)
    return row


def _preview_shown(preview: dict[str, Any] | None, *, members: bool) -> dict[str, Any] | None:
    if preview is None or members:
        return preview
    return {key: value for key, value in preview.items() if key not in MEMBER_PREVIEW_KEYS}


def _run(session: Session, run_id: str) -> dict[str, Any]:
    state = airflow_runs.run_states(session, [run_id]).get(run_id)
    return {"dag_id": DAG_ID, "run_id": run_id, "state": state, "url": airflow_runs.run_url(run_id)}


def bucket_for(first: datetime | None, last: datetime | None) -> tuple[str, int]:
    span = (last - first).total_seconds() if first and last else 0
    for unit, seconds, up_to in BUCKETS:
        if up_to is None or span <= up_to:
            return unit, seconds
    raise AssertionError("the last bucket has no limit")


def sends_over_time(conn: psycopg.Connection, campaign_id: uuid.UUID) -> dict[str, Any]:
    """Deliveries per second (or minute, or hour for long campaigns), from ``sent_at``."""
    span = conn.execute(queries.load("sent_span"), {"campaign_id": campaign_id}).fetchone()
    first, last = span if span else (None, None)
    unit, seconds = bucket_for(first, last)
    points = conn.execute(queries.load("sends_over_time"),
                          {"campaign_id": campaign_id, "unit": unit, "seconds": seconds}).fetchall()
    counts = [int(n) for _, n in points]
    return {"bucket": unit, "points": [{"t": t, "sent": int(n)} for t, n in points],
            "peak": max(counts, default=0), "first_sent": first, "last_sent": last}


def lift_report(conn: psycopg.Connection, campaign_id: uuid.UUID,
                relation: str = LIFT_RELATION) -> dict[str, Any]:
    """The campaign's rows of the lift table or view, or why there are none."""
    columns = [r[0] for r in conn.execute(queries.load("lift_columns"), {"relation": relation})]
    if not columns:
        return {"available": False, "note": f"no {relation} table or view in the loyalty database yet"}
    if "campaign_id" not in columns:
        return {"available": False, "note": f"{relation} has no campaign_id column"}
    query = sql.SQL("SELECT * FROM {} WHERE campaign_id::text = %s LIMIT {}").format(
        sql.Identifier(relation), sql.Literal(LIFT_ROW_LIMIT))
    try:
        with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
            rows = cur.execute(query, (str(campaign_id),)).fetchall()
    except psycopg.Error as err:
        reason = err.diag.message_primary or str(err)
        return {"available": False, "note": f"{relation} could not be read: {reason}"}
    return {"available": True, "columns": columns, "rows": rows}
