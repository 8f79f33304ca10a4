"""push_campaign end to end with dag.test(): real Airflow, real Postgres, the emulator over HTTP."""

from __future__ import annotations

import psycopg
import pytest

from fixtures.network import free_port
from passpush.emulator.control import EmulatorControl
from passpush.seed import SeededProgram

pytestmark = [pytest.mark.e2e, pytest.mark.airflow, pytest.mark.postgres, pytest.mark.emulator]

MESSAGE = "Double points this weekend only, {points} points waiting!"


def _campaign(db: psycopg.Connection, program_id: str) -> dict:
    from psycopg.rows import dict_row

    with db.cursor(row_factory=dict_row) as cur:
        return cur.execute("SELECT * FROM push_campaigns WHERE program_id = %s ORDER BY created_at DESC LIMIT 1",
                           (program_id,)).fetchone()


def test_campaign_reaches_every_active_member_once(run_dag, program: SeededProgram,
                                                   emulator_control: EmulatorControl, db) -> None:
    eligible = program.eligible_apple + program.eligible_google
    dag_run = run_dag({"program_id": program.program_id, "name": "e2e", "message": MESSAGE,
                       "dry_run": False, "batch_size": 50, "confirm_recipients": eligible})

    assert str(dag_run.state) == "success"
    campaign = _campaign(db, program.program_id)
    assert campaign["status"] == "COMPLETED"
    assert (campaign["confirmed_by"], campaign["confirmed_count"]) == ("confirm_recipients", eligible)
    assert campaign["sent_count"] == eligible
    assert campaign["failed_count"] == 0
    assert campaign["recipient_count"] == program.active
    assert campaign["skipped_count"] == program.active - eligible
    # counts on the campaign equal the recipient table
    by_status = dict(db.execute("SELECT status, count(*) FROM push_campaign_recipients WHERE campaign_id = %s"
                                " GROUP BY 1", (campaign["id"],)).fetchall())
    assert by_status.get("SENT") == campaign["sent_count"]
    assert by_status.get("SKIPPED") == campaign["skipped_count"]
    # every Apple pass buzzed exactly once, with its own rendered text; Google passes silently
    summary = emulator_control.notification_summary(program.passkit_program_id)
    assert summary["total"] == program.eligible_apple
    assert summary["max_per_member"] == 1
    assert emulator_control.stats()["silent_updates"] == program.eligible_google
    member, text = db.execute(
        "SELECT passkit_id, rendered_message FROM push_campaign_recipients WHERE campaign_id = %s"
        " AND status = 'SENT' AND wallet = 'apple' LIMIT 1", (campaign["id"],)).fetchone()
    notes = emulator_control.notifications(pass_id=member)
    assert [n["text"] for n in notes] == [text]


def test_dry_run_sends_nothing_and_stores_a_preview(run_dag, program: SeededProgram,
                                                     emulator_control: EmulatorControl, db) -> None:
    dag_run = run_dag({"program_id": program.program_id, "name": "preview", "message": MESSAGE,
                       "dry_run": True})

    assert str(dag_run.state) == "success"
    campaign = _campaign(db, program.program_id)
    assert campaign["status"] == "DRY_RUN"
    assert campaign["preview"]["will_buzz_iphone"] == program.eligible_apple
    assert campaign["preview"]["will_update_google"] == program.eligible_google
    assert campaign["sent_count"] == 0
    assert emulator_control.stats()["requests_total"] == 0


def test_bad_credentials_stop_the_campaign_before_any_push(run_dag, airflow_connections, program: SeededProgram,
                                                            emulator_control: EmulatorControl, db) -> None:
    airflow_connections(api_secret="not-the-secret")

    dag_run = run_dag({"program_id": program.program_id, "name": "bad creds", "message": MESSAGE,
                       "dry_run": False, "max_recipients": 10_000})

    assert str(dag_run.state) == "failed"
    campaign = _campaign(db, program.program_id)
    assert campaign["status"] == "FAILED"
    assert "401" in campaign["abort_reason"] or "credentials" in campaign["abort_reason"].lower()
    assert campaign["sent_count"] == 0
    assert emulator_control.notification_summary(program.passkit_program_id)["total"] == 0


def test_passkit_out_of_reach_fails_the_campaign_after_the_task_retries(
        run_dag, push_campaign_dag, program: SeededProgram, emulator, db, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each try leaves the campaign to the next; the task's failure callback fails it once none is left."""
    from datetime import timedelta

    from passpush import localdev

    unreachable = f"http://127.0.0.1:{free_port()}"  # nothing listens on it
    monkeypatch.setenv("AIRFLOW_CONN_PASSKIT_DEFAULT", localdev.passkit_connection_json(
        unreachable, emulator.api_key, emulator.api_secret))
    push_campaign_dag.get_task("plan_batches").retry_delay = timedelta(0)

    dag_run = run_dag({"program_id": program.program_id, "name": "outage", "message": MESSAGE,
                       "dry_run": False, "max_recipients": 10_000})

    assert str(dag_run.state) == "failed"
    planned = dag_run.get_task_instance("plan_batches")
    assert str(planned.state) == "failed"
    assert planned.try_number == push_campaign_dag.get_task("plan_batches").retries + 1
    campaign = _campaign(db, program.program_id)
    assert campaign["status"] == "FAILED"  # was CANCELLED, as if someone had rejected it
    assert campaign["abort_reason"].startswith(f"task plan_batches failed: PassKit at {unreachable} was out of reach")
    assert campaign["sent_count"] == 0
    assert campaign["cancelled_count"] == program.eligible_apple + program.eligible_google


def test_an_audience_larger_than_confirmed_is_cancelled_before_any_push(
        run_dag, program: SeededProgram, emulator_control: EmulatorControl, db) -> None:
    dag_run = run_dag({"program_id": program.program_id, "name": "grew", "message": MESSAGE,
                       "dry_run": False, "confirm_recipients": 10})

    # A cancelled campaign is an outcome, not an outage: the run ends, the gate task says why.
    gate = dag_run.get_task_instance("confirmation_gate")
    assert str(gate.state) == "failed"
    campaign = _campaign(db, program.program_id)
    assert campaign["status"] == "CANCELLED"
    assert "only 10 were confirmed" in campaign["abort_reason"]
    assert campaign["cancelled_count"] == program.eligible_apple + program.eligible_google
    assert emulator_control.stats()["requests_total"] == 0


def test_members_in_quiet_hours_are_sent_when_their_window_ends(run_dag, program: SeededProgram,
                                                                emulator_control: EmulatorControl, db) -> None:
    from datetime import UTC, datetime, timedelta

    db.execute("UPDATE users u SET timezone = 'UTC' FROM passes_master p WHERE p.user_id = u.id"
               " AND p.program_id = %s", (program.program_id,))
    now = datetime.now(UTC)
    window_end = now + timedelta(seconds=30)  # ends while send_batch waits, deferred
    eligible = program.eligible_apple + program.eligible_google

    dag_run = run_dag({"program_id": program.program_id, "name": "night", "message": MESSAGE, "dry_run": False,
                       "confirm_recipients": eligible, "quiet_hours": True,
                       "quiet_hours_start": (now - timedelta(hours=1)).strftime("%H:%M:%S"),
                       "quiet_hours_end": window_end.strftime("%H:%M:%S")})

    assert str(dag_run.state) == "success"
    campaign = _campaign(db, program.program_id)
    assert campaign["status"] == "COMPLETED" and campaign["sent_count"] == eligible
    first_send = db.execute("SELECT min(sent_at) FROM push_campaign_recipients WHERE campaign_id = %s",
                            (campaign["id"],)).fetchone()[0]
    assert first_send >= window_end.replace(microsecond=0)  # nobody was buzzed inside the window
