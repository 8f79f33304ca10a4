"""A real Celery cluster for the tests in this folder (marker ``cluster``).

``cluster`` (session scope) starts, from this virtualenv, the API server, scheduler, DAG processor,
triggerer, two Celery workers and the PassKit emulator, with Airflow's metadata and the loyalty
data in two fresh databases on the test PostgreSQL server (``PASSPUSH_TEST_DATABASE_URL``, else
127.0.0.1:5432) and Redis (``PASSPUSH_TEST_REDIS_URL``, else 127.0.0.1:6379/15) as broker. Ports
are free ones and the Celery queue is unique, so a developer's ``make cluster-up`` is not disturbed.
Everything is stopped and the databases dropped at the end, whatever happened; the processes'
logs stay in ``test-output/cluster-*/logs``, and a failing test's report shows that folder and
the last lines of each log.

Without PostgreSQL or Redis the tests are skipped, except under CI (``CI=true``), where they fail.
A cluster abandoned by a test session that was killed (its state folder untouched for half an hour)
is stopped and its databases dropped when the next session starts.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from fixtures.network import free_port
from passpush.cluster.config import DEFAULT_POSTGRES_URL, ClusterConfig
from passpush.cluster.errors import ClusterError
from passpush.cluster.preflight import check_postgres, check_redis
from passpush.cluster.processes import tail
from passpush.cluster.stack import Cluster
from passpush.paths import PROJECT_ROOT

RATE_LIMIT = 100.0  # what passpush is told: requests per second over all workers
EMULATOR_SETTINGS = {"rate_limit_per_second": 120, "rate_limit_burst": 40,  # PassKit's limit: a bit above
                     "latency_ms_min": 20, "latency_ms_max": 60, "seed": 8}
ABANDONED_AFTER_SECONDS = 1800  # far longer than a session of these tests lasts
OUTPUT_DIR = PROJECT_ROOT / "test-output"
_active: list[Cluster] = []


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "cluster: runs against a real Celery cluster (tests/cluster)")


def _test_config() -> ClusterConfig:
    tag = uuid.uuid4().hex[:8]
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    return ClusterConfig(
        state_dir=OUTPUT_DIR / f"cluster-{stamp}-{tag}",
        postgres_url=os.environ.get("PASSPUSH_TEST_DATABASE_URL") or DEFAULT_POSTGRES_URL,
        metadata_db=f"passpush_cluster_airflow_{tag}",
        loyalty_db=f"passpush_cluster_loyalty_{tag}",
        redis_url=os.environ.get("PASSPUSH_TEST_REDIS_URL") or "redis://127.0.0.1:6379/15",
        queue=f"passpush_test_{tag}",
        api_port=free_port(),
        emulator_port=free_port(),
        worker_concurrency=2,  # 2 workers x 2 = the pool's 4 slots: a full pool needs both workers
        pool_slots=4,
        passkit_rate_limit=RATE_LIMIT,
        emulator_settings=dict(EMULATOR_SETTINGS),
        heartbeat_timeout_seconds=20,  # a killed worker's tasks are retried after ~20 s, not 5 min
        demo_members=0,
    )


def _require_services(config: ClusterConfig) -> None:
    try:
        check_postgres(config.postgres_url)
        check_redis(config.redis_url)
    except ClusterError as err:
        if os.environ.get("CI"):
            pytest.fail(f"the cluster tests need PostgreSQL and Redis: {err}")
        pytest.skip(f"the cluster tests need PostgreSQL and Redis: {err}")


def _stop_abandoned_clusters() -> None:
    """Stop clusters of killed sessions; a colleague's running session is younger than the limit."""
    for config_file in OUTPUT_DIR.glob("cluster-*/cluster.json"):
        pids = config_file.parent / "pids"
        if pids.exists() and any(pids.iterdir()) and \
                time.time() - config_file.stat().st_mtime > ABANDONED_AFTER_SECONDS:
            abandoned = Cluster.from_state(config_file.parent)
            abandoned.down()
            abandoned.drop_databases()


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    config = _test_config()
    _require_services(config)
    _stop_abandoned_clusters()
    cluster = Cluster(config)
    _active.append(cluster)
    try:
        cluster.up(timeout=300)
        yield cluster
    finally:
        try:
            cluster.down()
        finally:
            cluster.drop_databases()
            _active.remove(cluster)
            print(f"\ncluster logs kept in {config.logs_dir}")


@pytest.fixture
def cluster_emulator(cluster: Cluster) -> Any:
    """The cluster's emulator, emptied (members, notifications, stats) before each test."""
    control = cluster.emulator_control()
    control.reset(config=True)
    return control


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.failed and _active and item.get_closest_marker("cluster"):
        cluster = _active[-1]
        logs = [f"logs folder: {cluster.config.logs_dir}"]
        for status in cluster.status():
            logs.append(f"--- {status.name} ({'running' if status.running else 'stopped'}): {status.log}")
            logs.append(tail(status.log, 15))
        report.sections.append(("cluster logs", "\n".join(logs)))
