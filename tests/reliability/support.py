"""Helpers shared by the reliability tests: campaigns through ``passpush.tasks``, emulator settings, waiting."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import psycopg

from passpush import campaigns, tasks
from passpush.emulator.control import EmulatorProcess
from passpush.passkit import PassKitSettings
from passpush.seed import SeededProgram

MESSAGE = "Hi {first_name|there}, {points} points waiting!"
DAG_ID = "reliability"


def conf_for(program: SeededProgram, **conf: Any) -> dict[str, Any]:
    return {"program_id": program.program_id, "name": "reliability", "message": MESSAGE, "dry_run": False,
            **conf}


def start_campaign(url: str, program: SeededProgram, *, run_id: str | None = None, **conf: Any) -> str:
    """create_campaign and resolve_audience as the DAG runs them, then the confirmation plan_batches records."""
    campaign_id = tasks.create_campaign(conf_for(program, **conf), dag_id=DAG_ID,
                                        run_id=run_id or str(uuid.uuid4()), conninfo=url)
    preview = tasks.resolve_audience(campaign_id, conninfo=url)
    with psycopg.connect(url) as conn:
        campaigns.confirm(conn, campaign_id, int(preview["eligible"]), "confirm_recipients")
    return campaign_id


def settings(emulator: EmulatorProcess, **overrides: Any) -> PassKitSettings:
    return PassKitSettings(base_url=emulator.url, api_key=emulator.api_key, api_secret=emulator.api_secret,
                           timeout_seconds=2.0, **overrides)


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


def count(db: psycopg.Connection, campaign_id: str, *statuses: str) -> int:
    row = db.execute("SELECT count(*) FROM push_campaign_recipients WHERE campaign_id = %s AND status = ANY(%s)",
                     (campaign_id, list(statuses))).fetchone()
    return int(row[0]) if row else 0


def eligible(program: SeededProgram) -> int:
    return program.eligible_apple + program.eligible_google
