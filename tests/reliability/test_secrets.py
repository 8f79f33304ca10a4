"""Secrets stay secret through a whole campaign run by Airflow (``dag.test()``), faults included:
the PassKit API secret, the database password and every JWT are absent from task logs, XCom, Airflow's
metadata database, passpush's tables and the emulator's own logs; the hook registers the API secret with
Airflow's masker, so a log line that did carry it would be redacted."""

from __future__ import annotations

import json
import logging
import os
import re
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from passpush import localdev
from passpush.emulator.control import EmulatorControl, EmulatorProcess
from reliability.invariants import assert_invariants
from reliability.support import conf_for, eligible

pytestmark = [pytest.mark.reliability, pytest.mark.airflow, pytest.mark.postgres, pytest.mark.emulator]

JWT = re.compile(rb"eyJ[\w-]{8,}\.eyJ[\w-]{8,}\.[\w-]{8,}")


def _xcom_values(run_id: str) -> list[Any]:
    from airflow import settings
    from airflow.models.xcom import XComModel
    from sqlalchemy import select

    with settings.Session() as session:
        rows = session.scalars(select(XComModel).where(XComModel.dag_id == "push_campaign",
                                                       XComModel.run_id == run_id)).all()
        return [(row.task_id, row.value) for row in rows]


def _metadata_db() -> bytes:
    home = Path(os.environ["AIRFLOW_HOME"])
    return b"".join(path.read_bytes() for path in home.glob("airflow.db*"))


def _task_log_files() -> bytes:
    logs = Path(os.environ["AIRFLOW_HOME"]) / "logs"
    return b"".join(p.read_bytes() for p in logs.rglob("*") if p.is_file()) if logs.exists() else b""


def _passpush_tables(db: psycopg.Connection, campaign_id: str) -> bytes:
    rows = db.execute(
        "SELECT row_to_json(c)::text FROM push_campaigns c WHERE id = %(id)s"
        " UNION ALL SELECT row_to_json(r)::text FROM push_campaign_recipients r WHERE campaign_id = %(id)s"
        " UNION ALL SELECT row_to_json(l)::text FROM passpush_rate_limits l", {"id": campaign_id}).fetchall()
    return "\n".join(r[0] for r in rows).encode()


def test_no_secret_in_logs_xcom_tables_or_the_emulator(run_dag, airflow_connections, migrated_database_url: str,
                                                      db: psycopg.Connection, seed_loyalty,
                                                      emulator: EmulatorProcess, emulator_control: EmulatorControl,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      capfd: pytest.CaptureFixture[str],
                                                      caplog: pytest.LogCaptureFixture) -> None:
    program = seed_loyalty(80, emulator)
    db_password = f"pg-password-{uuid.uuid4().hex}"  # trust auth ignores it; a leak would still show it
    monkeypatch.setenv("AIRFLOW_CONN_LOYALTY_DB",
                       localdev.airflow_connection_json(make_conninfo(migrated_database_url, password=db_password)))
    gone = db.execute("SELECT passkit_internal_id FROM passes_master WHERE program_id = %s AND status = 'ACTIVE'"
                      " AND NOT opted_out AND passkit_internal_id IS NOT NULL LIMIT 2",
                      (program.program_id,)).fetchall()
    # Errors in the logs, and PassKit handing out fresh tokens on every success.
    emulator_control.configure(fault_503=0.05, fault_500=0.02, refresh_token_header=True,
                               fail_members={pid: 404 for (pid,) in gone})
    caplog.set_level(logging.DEBUG, logger="passpush")

    dag_run = run_dag(conf_for(program, confirm_recipients=eligible(program)))

    assert str(dag_run.state) == "success"
    row = db.execute("SELECT id::text FROM push_campaigns WHERE dag_run_id = %s", (dag_run.run_id,)).fetchone()
    campaign_id = row[0]
    assert_invariants(db, emulator_control, campaign_id)
    captured = capfd.readouterr()
    xcoms = _xcom_values(dag_run.run_id)
    assert {task for task, _ in xcoms} >= {"create_campaign", "resolve_audience", "plan_batches", "reconcile"}
    places = {
        "task output": (captured.out + captured.err).encode(),
        "log records": "\n".join(f"{r.getMessage()} {r.args!r}" for r in caplog.records).encode(),
        "task log files": _task_log_files(),
        "XCom": json.dumps(xcoms, default=str).encode(),
        "Airflow metadata DB": _metadata_db(),
        "passpush tables": _passpush_tables(db, campaign_id),
        "emulator log": emulator.log_path.read_bytes(),
        "emulator request log and config": json.dumps([emulator_control.request_log(limit=1000),
                                                       emulator_control.config()]).encode(),
    }
    secrets = {"PassKit API secret": emulator.api_secret.encode(), "database password": db_password.encode()}
    for place, content in places.items():
        for name, secret in secrets.items():
            assert secret not in content, f"the {name} appears in the {place}"
        assert not JWT.search(content), f"a JWT appears in the {place}: {JWT.search(content)}"
    assert emulator.api_key.encode() not in places["passpush tables"]  # the rate-limit key holds a digest
    assert len(places["task output"]) > 1000 and "sent" in caplog.text  # the scan saw real logs


def test_the_hook_registers_the_api_secret_with_airflows_masker(airflow_connections,
                                                                emulator: EmulatorProcess) -> None:
    from airflow.sdk.log import redact

    from passpush import tasks

    tasks.passkit_settings()  # what every task does first

    assert redact(f"token signed with {emulator.api_secret}") == "token signed with ***"
