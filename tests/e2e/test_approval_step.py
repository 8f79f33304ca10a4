"""The approval step, driven as a user would: a real Airflow API server shares the metadata DB with the
dag.test() run; a "user" finds the pending Required Action through the REST API and answers it."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import requests

from fixtures.network import free_port
from passpush.emulator.control import EmulatorControl
from passpush.seed import SeededProgram

pytestmark = [pytest.mark.e2e, pytest.mark.airflow, pytest.mark.postgres, pytest.mark.emulator]


@pytest.fixture(scope="module")
def api_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    log = tmp_path_factory.mktemp("api-server") / "api-server.log"
    env = {**os.environ, "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True"}
    airflow = str(Path(sys.executable).with_name("airflow"))
    with log.open("wb") as out:
        proc = subprocess.Popen([airflow, "api-server", "--port", str(port)], stdout=out,
                                stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{url}/api/v2/monitor/health", timeout=2).ok:
                    break
            except requests.ConnectionError:
                time.sleep(0.5)
            if proc.poll() is not None:
                pytest.fail(f"api-server exited: {log.read_text()[-3000:]}")
        else:
            pytest.fail(f"api-server did not start: {log.read_text()[-3000:]}")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


class Approver(threading.Thread):
    """Waits for the run's pending approval and answers it through the REST API, as the UI does."""

    def __init__(self, url: str, answer: str) -> None:
        super().__init__(daemon=True)
        self.url, self.answer = url, answer
        self.seen: dict[str, Any] | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            token = requests.get(f"{self.url}/auth/token", timeout=10).json()["access_token"]
            headers = {"Authorization": f"Bearer {token}"}
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and self.seen is None:
                listing = requests.get(f"{self.url}/api/v2/dags/push_campaign/dagRuns/~/hitlDetails",
                                       headers=headers, timeout=10).json()
                pending = [d for d in listing.get("hitl_details", []) if not d.get("response_received")]
                if pending:
                    self.seen = pending[0]
                    ti = self.seen["task_instance"]
                    reply = requests.patch(
                        f"{self.url}/api/v2/dags/push_campaign/dagRuns/{ti['dag_run_id']}/taskInstances/"
                        f"approve_send/-1/hitlDetails", headers=headers, timeout=10,
                        json={"chosen_options": [self.answer], "params_input": {}})
                    reply.raise_for_status()
                time.sleep(0.5)
        except BaseException as err:  # surfaced by the test
            self.error = err


def _campaign(db: psycopg.Connection, program_id: str) -> tuple[str, int, int, str | None]:
    return db.execute("SELECT status, sent_count, cancelled_count, confirmed_by FROM push_campaigns"
                      " WHERE program_id = %s ORDER BY created_at DESC LIMIT 1", (program_id,)).fetchone()


@pytest.mark.parametrize("answer", ["Approve", "Reject"])
def test_without_a_confirmed_count_a_person_approves_or_rejects(
        answer: str, api_server: str, run_dag, program: SeededProgram, emulator_control: EmulatorControl,
        db) -> None:
    approver = Approver(api_server, answer)
    approver.start()

    run_dag({"program_id": program.program_id, "name": f"needs approval ({answer})", "dry_run": False,
             "message": "Double points this weekend, {first_name|friend}!"})
    approver.join(5)

    assert approver.error is None, approver.error
    assert approver.seen is not None
    eligible = program.eligible_apple + program.eligible_google
    assert approver.seen["subject"].startswith(f"This will buzz {program.eligible_apple} phones")
    status, sent, cancelled, confirmed_by = _campaign(db, program.program_id)
    if answer == "Approve":
        assert (status, sent, confirmed_by) == ("COMPLETED", eligible, "approval")
        assert emulator_control.notification_summary(program.passkit_program_id)["total"] == program.eligible_apple
    else:
        assert (status, sent, cancelled) == ("CANCELLED", 0, eligible)
        assert emulator_control.stats()["requests_total"] == 0
        reason = db.execute("SELECT abort_reason FROM push_campaigns WHERE program_id = %s ORDER BY created_at DESC"
                            " LIMIT 1", (program.program_id,)).fetchone()[0]
        assert reason.startswith("never confirmed: the approval was rejected")  # was no reason at all
