"""``make demo``: one real campaign, end to end, through the ``push_campaign`` DAG.

Starts what is not configured (embedded Postgres, PassKit emulator), migrates, seeds a program
of 5,000 members, runs the DAG with ``airflow dags test`` and prints what happened, reading the
campaign from Postgres and the buzzes from the emulator.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from dataclasses import dataclass
from typing import Any

import psycopg

from passpush import localdev
from passpush.emulator.control import EmulatorProcess, start_emulator
from passpush.paths import STATE_DIR
from passpush.seed import SeedSpec, seed_program

log = logging.getLogger(__name__)

DEMO_MESSAGE = "Double points this weekend only, {points} points waiting!"


@dataclass
class DemoResult:
    campaign: dict[str, Any]
    buzzed: int
    max_buzz_per_member: int
    silent_updates: int
    wall_seconds: float
    send_seconds: float | None


def _campaign_of(conninfo: str, program_id: str) -> dict[str, Any]:
    from psycopg.rows import dict_row

    with psycopg.connect(conninfo) as conn, conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            "SELECT id, name, status, recipient_count, sent_count, failed_count, skipped_count, cancelled_count,"
            " abort_reason, extract(epoch FROM finished_at - started_at) AS seconds"
            " FROM push_campaigns WHERE program_id = %s ORDER BY created_at DESC LIMIT 1", (program_id,)
        ).fetchone()
    if row is None:
        raise SystemExit("the DAG run created no campaign: see the Airflow output above")
    return row


def _send_seconds(conninfo: str, campaign_id: str) -> float | None:
    with psycopg.connect(conninfo) as conn:
        row = conn.execute(
            "SELECT extract(epoch FROM max(sent_at) - min(sent_at)) FROM push_campaign_recipients"
            " WHERE campaign_id = %s AND status = 'SENT'", (campaign_id,)).fetchone()
    return float(row[0]) if row and row[0] is not None else None


def print_summary(result: DemoResult) -> None:
    c = result.campaign
    sent = c["sent_count"] or 0
    rate = sent / result.send_seconds if result.send_seconds else float("nan")
    lines = [
        ("campaign", f"{c['name']} ({c['id']})"),
        ("status", c["status"] + (f" - {c['abort_reason']}" if c["abort_reason"] else "")),
        ("targeted", c["recipient_count"]),
        ("sent", sent),
        ("failed", c["failed_count"]),
        ("skipped", c["skipped_count"]),
        ("cancelled", c["cancelled_count"]),
        ("phones buzzed (emulator)", f"{result.buzzed} (max {result.max_buzz_per_member} per member)"),
        ("Google passes updated silently", result.silent_updates),
        ("wall time", f"{result.wall_seconds:.1f} s"),
        ("sends per second", f"{rate:.0f} (over the send phase)"),
    ]
    width = max(len(k) for k, _ in lines)
    print("\n== passpush demo ==")
    for key, value in lines:
        print(f"  {key:<{width}}  {value}")


def _passkit(emulator: EmulatorProcess | None, rate: float) -> str | None:
    if emulator is None:
        return os.environ.get("AIRFLOW_CONN_PASSKIT_DEFAULT")
    secret = os.environ.get("PASSPUSH_DEMO_API_SECRET", emulator.api_secret)  # to show bad credentials
    return localdev.passkit_connection_json(emulator.url, emulator.api_key, secret, rate_limit_per_second=rate)


def run(members: int = 5000, rate: float = 400.0, seed: int = 42) -> int:
    started = time.monotonic()
    STATE_DIR.mkdir(exist_ok=True)
    conninfo = localdev.local_database("passpush_demo", fresh=not os.environ.get("PASSPUSH_DATABASE_URL"))
    emulator = None
    if not os.environ.get("AIRFLOW_CONN_PASSKIT_DEFAULT"):
        emulator = start_emulator(log_path=STATE_DIR / "emulator-demo.log", latency_ms_min=20, latency_ms_max=60)
        print(f"PassKit emulator on {emulator.url}")
    try:
        program = seed_program(conninfo, SeedSpec(members=members, seed=seed),
                               emulator.control if emulator else None)
        print(f"seeded program {program.program_id}: {program.members} members, {program.active} active")
        env = localdev.airflow_env(conninfo, _passkit(emulator, rate))
        localdev.prepare_airflow(env)
        conf = {"program_id": program.program_id, "name": "Weekend double points", "message": DEMO_MESSAGE,
                "audience": "all_active", "dry_run": False,
                # The demo shows a whole send now, whatever the hour in the members' (synthetic) time zones.
                "quiet_hours": False,
                "confirm_recipients": program.eligible_apple + program.eligible_google}
        proc = localdev.airflow_command(["dags", "test", "push_campaign", "-c", json.dumps(conf)], env,
                                        check=False, timeout=1800)
        campaign = _campaign_of(conninfo, program.program_id)
        summary = emulator.control.notification_summary(program.passkit_program_id) if emulator else {}
        stats = emulator.control.stats() if emulator else {}
        result = DemoResult(campaign, int(summary.get("total", 0)), int(summary.get("max_per_member", 0)),
                            int(stats.get("silent_updates", 0)), time.monotonic() - started,
                            _send_seconds(conninfo, str(campaign["id"])))
        print_summary(result)
        ok = proc.returncode == 0 and campaign["status"] == "COMPLETED"
        return 0 if ok else 1
    finally:
        if emulator:
            emulator.stop()


if __name__ == "__main__":
    sys.exit(run())
