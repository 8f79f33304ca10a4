"""push_campaign on a real Celery cluster, triggered through the REST API as the UI triggers it.

Each test seeds a program of 2,000 members (Postgres and emulator), triggers a run with
``batch_size`` 400 (5 mapped ``send_batch`` tasks for ~1,900 eligible members) at 100 requests/s,
and checks the result three ways: the DAG run in the API, the campaign in Postgres, and what the
PassKit emulator saw. The connection uses ``metadata_update=merge`` (one request per member).
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from passpush.cluster.stack import DAG_ID, Cluster
from passpush.seed import SeededProgram, SeedSpec, seed_program

from .conftest import EMULATOR_SETTINGS, RATE_LIMIT

pytestmark = pytest.mark.cluster

MEMBERS = 2000
BATCH_SIZE = 400
RUN_TIMEOUT = 240


def _seed(cluster: Cluster, emulator: Any, seed: int) -> SeededProgram:
    return seed_program(cluster.config.loyalty_conninfo, SeedSpec(members=MEMBERS, seed=seed), emulator)


def _trigger(cluster: Cluster, program: SeededProgram, name: str) -> str:
    """POST the trigger form with the confirmed count (so no approval step), as a marketer would."""
    eligible = program.eligible_apple + program.eligible_google
    run = cluster.api().trigger(DAG_ID, {
        "program_id": program.program_id, "name": name, "audience": "all_active",
        "message": "Double points for {first_name|there}: {points} points waiting!",
        "dry_run": False, "confirm_recipients": eligible, "batch_size": BATCH_SIZE,
        "rate_limit_per_second": RATE_LIMIT})
    return str(run["dag_run_id"])


def _campaign(cluster: Cluster, run_id: str) -> dict[str, Any]:
    with psycopg.connect(cluster.config.loyalty_conninfo) as conn, conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute("SELECT * FROM push_campaigns WHERE dag_id = %s AND dag_run_id = %s",
                          (DAG_ID, run_id)).fetchone()
    assert row is not None, f"run {run_id} created no campaign"
    return row


def _recipients(cluster: Cluster, campaign_id: str) -> dict[str, Any]:
    """Counts by status, Apple passes sent, and the send phase's rate from ``sent_at``."""
    with psycopg.connect(cluster.config.loyalty_conninfo) as conn:
        by_status = dict(conn.execute(
            "SELECT status, count(*) FROM push_campaign_recipients WHERE campaign_id = %s GROUP BY 1",
            (campaign_id,)).fetchall())
        apple_sent, span = conn.execute(
            "SELECT count(*) FILTER (WHERE wallet = 'apple'), extract(epoch FROM max(sent_at) - min(sent_at))"
            " FROM push_campaign_recipients WHERE campaign_id = %s AND status = 'SENT'",
            (campaign_id,)).fetchone()
    return {"by_status": by_status, "apple_sent": apple_sent, "send_seconds": float(span or 0.0)}


def _overlap(a: dict[str, Any], b: dict[str, Any]) -> bool:
    start_a, end_a = datetime.fromisoformat(a["start_date"]), datetime.fromisoformat(a["end_date"])
    start_b, end_b = datetime.fromisoformat(b["start_date"]), datetime.fromisoformat(b["end_date"])
    return start_a < end_b and start_b < end_a


def _assert_delivered_once(cluster: Cluster, emulator: Any, program: SeededProgram, run_id: str) -> None:
    """COMPLETED, every eligible member SENT exactly once, and phones buzzed once each."""
    eligible = program.eligible_apple + program.eligible_google
    campaign = _campaign(cluster, run_id)
    recipients = _recipients(cluster, str(campaign["id"]))
    assert campaign["status"] == "COMPLETED", campaign
    assert campaign["sent_count"] == eligible and campaign["failed_count"] == 0, campaign
    assert recipients["by_status"].get("SENT") == eligible, recipients
    assert not {"PENDING", "SENDING", "RETRYABLE"} & set(recipients["by_status"]), recipients
    buzzes = emulator.notification_summary(program.passkit_program_id)
    assert buzzes["max_per_member"] == 1, buzzes
    assert buzzes["members"] == buzzes["total"] == recipients["apple_sent"] == program.eligible_apple, buzzes


def test_campaign_runs_on_both_workers_under_the_global_rate_limit(cluster: Cluster, cluster_emulator: Any) -> None:
    program = _seed(cluster, cluster_emulator, seed=5101)
    run_id = _trigger(cluster, program, "cluster: two workers")
    api = cluster.api()

    run = api.wait_for_run(DAG_ID, run_id, timeout=RUN_TIMEOUT)

    assert run["state"] == "success", run
    _assert_delivered_once(cluster, cluster_emulator, program, run_id)
    sends = api.task_instances(DAG_ID, run_id, "send_batch")
    assert len(sends) >= 4 and {ti["state"] for ti in sends} == {"success"}, sends
    hosts = {ti["hostname"] for ti in sends}
    assert hosts == {w.name for w in cluster.config.workers}, f"send_batch ran on {hosts}"
    assert any(_overlap(a, b) for a in sends for b in sends if a["hostname"] != b["hostname"]), \
        "no two send_batch tasks on different workers ran at the same time"
    # The limit is global: 4 senders in parallel, yet PassKit never saw more than its limit per
    # second, never answered 429, and the send phase kept to the configured rate on average.
    stats = cluster_emulator.stats()
    assert stats["rate_limited"] == 0, stats
    assert stats["peak_rps"] <= EMULATOR_SETTINGS["rate_limit_per_second"], stats
    recipients = _recipients(cluster, str(_campaign(cluster, run_id)["id"]))
    mean_rate = recipients["by_status"]["SENT"] / recipients["send_seconds"]
    assert mean_rate <= RATE_LIMIT * 1.05, f"{mean_rate:.1f} sends/s over the send phase"


def _wait_running_on(api: Any, run_id: str, hostname: str, timeout: float = 90) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        running = [ti for ti in api.task_instances(DAG_ID, run_id, "send_batch")
                   if ti["state"] == "running" and ti["hostname"] == hostname]
        if running:
            return running
        time.sleep(0.5)
    pytest.fail(f"no send_batch task ran on {hostname} within {timeout}s")


def _sent_so_far(cluster: Cluster, run_id: str) -> int:
    with psycopg.connect(cluster.config.loyalty_conninfo) as conn:
        row = conn.execute(
            "SELECT count(*) FROM push_campaign_recipients r JOIN push_campaigns c ON c.id = r.campaign_id"
            " WHERE c.dag_run_id = %s AND r.status = 'SENT'", (run_id,)).fetchone()
    return int(row[0]) if row else 0


def test_killed_worker_mid_campaign_converges_without_loss_or_double(cluster: Cluster, cluster_emulator: Any) -> None:
    program = _seed(cluster, cluster_emulator, seed=5202)
    victim, survivor = (w.name for w in cluster.config.workers)
    run_id = _trigger(cluster, program, "cluster: a worker dies")
    api = cluster.api()
    try:
        killed = _wait_running_on(api, run_id, victim)
        deadline = time.monotonic() + 60
        while _sent_so_far(cluster, run_id) < 200 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert cluster.kill_worker(victim)  # SIGKILL, with its task processes: a crash, not a drain

        run = api.wait_for_run(DAG_ID, run_id, timeout=RUN_TIMEOUT)
    finally:
        cluster.start_workers([victim])

    assert run["state"] == "success", run
    _assert_delivered_once(cluster, cluster_emulator, program, run_id)
    sends = {ti["map_index"]: ti for ti in api.task_instances(DAG_ID, run_id, "send_batch")}
    for ti in killed:
        retried = sends[ti["map_index"]]
        assert retried["try_number"] >= 2 and retried["hostname"] == survivor, retried
