"""PassKit misbehaving while a campaign sends: random 5xx/429, hangs past the client timeout, dropped
connections, a 10-second outage, unknown members, credentials revoked halfway. Each campaign ends in
the right state with the right reasons, and the invariants hold against the emulator's own log."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest

from passpush import reconciliation, sending
from passpush.emulator.control import EmulatorControl, EmulatorProcess
from passpush.seed import SeededProgram
from reliability.invariants import assert_invariants
from reliability.support import conf_for, count, eligible, settings, start_campaign

pytestmark = [pytest.mark.reliability, pytest.mark.postgres, pytest.mark.emulator]


def _latest_campaign(db: psycopg.Connection, program: SeededProgram) -> str:
    row = db.execute("SELECT id::text FROM push_campaigns WHERE program_id = %s ORDER BY created_at DESC LIMIT 1",
                     (program.program_id,)).fetchone()
    assert row is not None
    return row[0]


def _answers(control: EmulatorControl, status: str) -> int:
    return sum(codes.get(status, 0) for codes in control.stats()["requests"].values())


@contextmanager
def when_sent(url: str, program: SeededProgram, at_least: int, action: Callable[[], Any]) -> Iterator[None]:
    """Run ``action`` from a watcher thread once ``at_least`` rows of the program's campaign are SENT."""
    done = threading.Event()

    def watch() -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            while not done.is_set():
                row = conn.execute("SELECT count(*) FROM push_campaign_recipients r JOIN push_campaigns c"
                                   " ON c.id = r.campaign_id WHERE c.program_id = %s AND r.status = 'SENT'",
                                   (program.program_id,)).fetchone()
                if row and row[0] >= at_least:
                    action()
                    return
                done.wait(0.02)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        yield
    finally:
        done.set()
        watcher.join(10)


@pytest.mark.airflow
def test_random_faults_hangs_drops_and_unknown_members(run_dag, airflow_connections, migrated_database_url: str,
                                                      db: psycopg.Connection, seed_loyalty,
                                                      emulator: EmulatorProcess,
                                                      emulator_control: EmulatorControl) -> None:
    program = seed_loyalty(200, emulator)
    airflow_connections(timeout_seconds=1.0)  # a hang of 2.5 s outlives the client's patience
    gone = db.execute("SELECT passkit_internal_id FROM passes_master WHERE program_id = %s AND status = 'ACTIVE'"
                      " AND NOT opted_out AND passkit_internal_id IS NOT NULL ORDER BY external_id LIMIT 4",
                      (program.program_id,)).fetchall()
    emulator_control.configure(fault_503=0.05, fault_429=0.02, fault_500=0.01, fault_hang=0.01, hang_seconds=2.5,
                               fault_drop=0.01, fault_drop_after_apply=0.01, latency_ms_min=1, latency_ms_max=5,
                               fail_members={pid: 404 for (pid,) in gone})

    dag_run = run_dag(conf_for(program, batch_size=100, confirm_recipients=eligible(program)))

    assert str(dag_run.state) == "success"
    checked = assert_invariants(db, emulator_control, _latest_campaign(db, program))
    assert checked.campaign["status"] == "COMPLETED_WITH_ERRORS"
    assert checked.by_reason == {("FAILED", "http_404"): len(gone)}
    assert checked.count("SENT") == eligible(program) - len(gone)
    assert checked.notifications + checked.silent_updates == checked.count("SENT")
    stats = emulator_control.stats()
    assert stats["faults_total"] > 0, stats["faults"]


def test_a_ten_second_outage_mid_campaign_is_ridden_out(migrated_database_url: str, db: psycopg.Connection,
                                                         seed_loyalty, emulator: EmulatorProcess,
                                                         emulator_control: EmulatorControl) -> None:
    """PassKit's advice for 503 is "back off and repeat until successful": a 10-second outage must not
    fail the members whose turn fell inside it (it used to fail three quarters of them)."""
    program = seed_loyalty(150, emulator)
    emulator_control.configure(latency_ms_min=5, latency_ms_max=10)
    campaign_id = start_campaign(migrated_database_url, program)

    with when_sent(migrated_database_url, program, 20, lambda: emulator_control.configure(burst_503_seconds=10)):
        summary = sending.send_batch(migrated_database_url, campaign_id, 0, settings(emulator),
                                     sending.SendOptions(rate_limit_per_second=200))

    with psycopg.connect(migrated_database_url) as conn:
        reconciliation.finalize(conn, campaign_id)
    checked = assert_invariants(db, emulator_control, campaign_id)
    assert emulator_control.stats()["faults"].get("burst_503", 0) > 0
    assert summary.seconds >= 10
    assert (checked.campaign["status"], checked.by_reason) == ("COMPLETED", {})
    assert checked.count("SENT") == eligible(program)


@pytest.mark.airflow
def test_credentials_revoked_halfway_stop_the_campaign(run_dag, migrated_database_url: str,
                                                       db: psycopg.Connection, seed_loyalty,
                                                       emulator: EmulatorProcess,
                                                       emulator_control: EmulatorControl) -> None:
    program = seed_loyalty(200, emulator)
    emulator_control.configure(latency_ms_min=20, latency_ms_max=30)
    revoked_after = 0

    def revoke() -> None:
        nonlocal revoked_after
        emulator_control.configure(credentials_revoked=True)
        revoked_after = emulator_control.stats()["requests_total"]

    with when_sent(migrated_database_url, program, 30, revoke):
        dag_run = run_dag(conf_for(program, rate_limit_per_second=60, confirm_recipients=eligible(program)))

    assert str(dag_run.state) == "failed"
    assert str(dag_run.get_task_instance("send_batch", map_index=0).state) == "failed"
    campaign_id = _latest_campaign(db, program)
    checked = assert_invariants(db, emulator_control, campaign_id)
    assert checked.campaign["status"] == "FAILED"
    assert "credentials" in checked.campaign["abort_reason"] and "401" in checked.campaign["abort_reason"]
    assert 30 <= checked.count("SENT") < eligible(program)
    assert set(checked.by_reason) <= {("CANCELLED", "campaign_stopped"), ("FAILED", "in_doubt_unverified")}
    assert checked.count("SENT") + checked.count("CANCELLED") + checked.count("FAILED") == eligible(program)
    # no retry storm: after the revocation only the requests already in flight, then nothing
    assert 0 < _answers(emulator_control, "401") <= sending.SendOptions(1).max_in_flight
    assert emulator_control.stats()["requests_total"] - revoked_after <= sending.SendOptions(1).max_in_flight
    assert count(db, campaign_id, "SENT") == checked.notifications + checked.silent_updates
