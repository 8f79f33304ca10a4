"""Ten campaigns at once on one PassKit account: the global request-rate limit holds across all of
them, nothing deadlocks, each campaign finishes with its invariants intact. A sender that outlives its
task (a zombie) cannot change a campaign reconcile has closed."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait

import psycopg
import pytest

from passpush import reconciliation, sending, tasks
from passpush.emulator.control import EmulatorControl, EmulatorProcess
from reliability.invariants import assert_invariants
from reliability.support import count, eligible, settings, start_campaign, wait_until

pytestmark = [pytest.mark.reliability, pytest.mark.postgres, pytest.mark.emulator]

CAMPAIGNS = 10
PASSKIT_LIMIT = 100  # what the emulator allows
PASSPUSH_LIMIT = 80  # what passpush is told, for all campaigns together


def test_ten_campaigns_at_once_share_the_global_rate_limit(migrated_database_url: str, db: psycopg.Connection,
                                                           seed_loyalty, emulator: EmulatorProcess,
                                                           emulator_control: EmulatorControl,
                                                           airflow_connections) -> None:
    programs = [seed_loyalty(30, emulator) for _ in range(CAMPAIGNS)]
    emulator_control.configure(rate_limit_per_second=PASSKIT_LIMIT,  # bucket: 0.1 s of tokens
                               latency_ms_min=5, latency_ms_max=15)
    airflow_connections(rate_limit_per_second=PASSPUSH_LIMIT, metadata_update="merge")  # one request per member
    campaign_ids = [start_campaign(migrated_database_url, program) for program in programs]
    requests = sum(eligible(p) for p in programs)

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=CAMPAIGNS) as workers:  # ten send_batch tasks, each its own loop
        futures = [workers.submit(tasks.send_batch, cid, 0, conninfo=migrated_database_url) for cid in campaign_ids]
        done, not_done = wait(futures, timeout=60)
    elapsed = time.monotonic() - started

    assert not not_done, "a sender never finished: deadlock?"
    summaries = [f.result() for f in done]
    assert sum(s["sent"] for s in summaries) == requests
    stats = emulator_control.stats()
    assert stats["rate_limited"] == 0, stats["recent_rps"]
    assert stats["peak_rps"] <= PASSKIT_LIMIT, stats["recent_rps"]
    assert elapsed >= requests / PASSPUSH_LIMIT * 0.85  # the limit was shared, not multiplied
    for campaign_id in campaign_ids:
        assert tasks.reconcile(campaign_id, conninfo=migrated_database_url)["status"] == "COMPLETED"
        assert assert_invariants(db, emulator_control, campaign_id).count("FAILED") == 0


def test_a_sender_outliving_reconcile_does_not_change_the_closed_campaign(
        migrated_database_url: str, db: psycopg.Connection, seed_loyalty, emulator: EmulatorProcess,
        emulator_control: EmulatorControl) -> None:
    """A zombie send_batch (its task failed for lost heartbeats, its process still running) answers after
    reconcile closed the campaign: the rows reconcile counted keep their final state, so the counts on
    push_campaigns stay those of the recipient table."""
    program = seed_loyalty(60, emulator)
    emulator_control.configure(latency_ms_min=1500, latency_ms_max=1500)
    campaign_id = start_campaign(migrated_database_url, program)
    zombie = threading.Thread(target=sending.send_batch, daemon=True, args=(
        migrated_database_url, campaign_id, 0, settings(emulator, metadata_update="merge"),
        sending.SendOptions(rate_limit_per_second=500)))
    zombie.start()
    wait_until(lambda: count(db, campaign_id, "SENDING") == eligible(program), 10, "the zombie to claim its rows")

    with psycopg.connect(migrated_database_url) as conn:  # reconcile closes the campaign meanwhile
        closed = reconciliation.finalize(conn, campaign_id)
    zombie.join(30)

    assert not zombie.is_alive() and closed.failed == eligible(program)
    checked = assert_invariants(db, emulator_control, campaign_id)
    assert checked.by_reason == {("FAILED", "in_doubt_unverified"): eligible(program)}
