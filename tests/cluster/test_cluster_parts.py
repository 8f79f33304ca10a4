"""The cluster's parts without a cluster: messages when services are missing, configuration,
process trees, idempotent stop, and the hostname callable. Fast; no marker."""

from __future__ import annotations

import os
import socket
import sys
import time
from pathlib import Path

import psutil
import pytest

from fixtures.network import free_port
from passpush.cluster.config import ClusterConfig, WorkerSpec, from_env, sqlalchemy_url, worker_env
from passpush.cluster.errors import ClusterError
from passpush.cluster.hostname import worker_hostname
from passpush.cluster.preflight import check_ports_free, check_postgres, check_redis
from passpush.cluster.processes import ProcessManager, ServiceSpec
from passpush.cluster.stack import Cluster


def test_unreachable_postgres_is_named_with_the_fix() -> None:
    port = free_port()
    with pytest.raises(ClusterError, match=rf"PostgreSQL is not reachable at 127\.0\.0\.1:{port}.*"
                                           r"PASSPUSH_CLUSTER_POSTGRES_URL"):
        check_postgres(f"postgresql://postgres@127.0.0.1:{port}/postgres", timeout=2)


def test_unreachable_redis_is_named_with_the_fix() -> None:
    port = free_port()
    with pytest.raises(ClusterError, match=rf"Redis is not reachable at 127\.0\.0\.1:{port}.*"
                                           r"PASSPUSH_CLUSTER_REDIS_URL"):
        check_redis(f"redis://127.0.0.1:{port}/0", timeout=1)


def test_a_taken_port_is_reported() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(ClusterError, match=f"API server port {port}"):
            check_ports_free({"API server": port})


def test_up_stops_at_the_first_missing_service_before_starting_anything(tmp_path: Path) -> None:
    cluster = Cluster(ClusterConfig(state_dir=tmp_path, redis_url=f"redis://127.0.0.1:{free_port()}/0"))
    if not _postgres_answers(cluster.config.postgres_url):
        pytest.skip("no PostgreSQL on 127.0.0.1:5432")
    with pytest.raises(ClusterError, match="Redis is not reachable"):
        cluster.up(timeout=5)
    assert cluster.processes.names() == []


def _postgres_answers(url: str) -> bool:
    try:
        check_postgres(url, timeout=2)
    except ClusterError:
        return False
    return True


def test_config_round_trips_and_env_overrides_what_was_recorded(tmp_path: Path) -> None:
    recorded = ClusterConfig(state_dir=tmp_path, api_port=18080, queue="q1", workers=(WorkerSpec("w-a"),))
    recorded.save()
    assert ClusterConfig.load(tmp_path) == recorded
    assert from_env({}, state_dir=tmp_path) == recorded
    changed = from_env({"PASSPUSH_CLUSTER_STATE_DIR": str(tmp_path), "PASSPUSH_CLUSTER_API_PORT": "18081"})
    assert (changed.api_port, changed.queue, changed.workers) == (18081, "q1", (WorkerSpec("w-a"),))


def test_metadata_url_quotes_credentials() -> None:
    assert sqlalchemy_url("host=db port=5433 user=air password=p@ss/w dbname=meta") == \
        "postgresql+psycopg2://air:p%40ss%2Fw@db:5433/meta"


def test_each_worker_reports_its_own_hostname(monkeypatch: pytest.MonkeyPatch) -> None:
    env = worker_env({}, WorkerSpec("worker-7"))
    assert env["AIRFLOW__CORE__HOSTNAME_CALLABLE"] == "passpush.cluster.hostname.worker_hostname"
    monkeypatch.setenv("PASSPUSH_WORKER_HOSTNAME", env["PASSPUSH_WORKER_HOSTNAME"])
    assert worker_hostname() == "worker-7"
    monkeypatch.delenv("PASSPUSH_WORKER_HOSTNAME")
    assert worker_hostname() == socket.getfqdn()


# A service whose child moves to a process group of its own, as Airflow's task processes do.
_PARENT_WITH_ESCAPED_CHILD = """
import os, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], start_new_session=True)
print(child.pid, flush=True)
time.sleep(120)
"""


def _child_pid(manager: ProcessManager, name: str) -> int:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        lines = manager.log_path(name).read_text().split("\n")
        numbers = [line for line in lines if line.strip().isdigit()]
        if numbers:
            return int(numbers[-1])
        time.sleep(0.05)
    raise AssertionError("the service did not print its child's pid")


@pytest.mark.parametrize("how", ["stop", "kill"])
def test_stop_and_kill_take_the_whole_tree_and_repeat_harmlessly(tmp_path: Path, how: str) -> None:
    manager = ProcessManager(tmp_path)
    pid = manager.start(ServiceSpec("svc", [sys.executable, "-c", _PARENT_WITH_ESCAPED_CHILD]))
    child = _child_pid(manager, "svc")
    assert manager.running("svc") and manager.start(ServiceSpec("svc", ["false"])) == pid  # not twice

    if how == "stop":
        assert manager.stop(["svc"], timeout=5) == ["svc"]
        assert manager.stop(["svc"]) == []
    else:
        assert manager.kill("svc") and not manager.kill("svc")

    assert not manager.running("svc") and manager.names() == []
    for gone in (pid, child):
        assert not psutil.pid_exists(gone) or psutil.Process(gone).status() == psutil.STATUS_ZOMBIE


def test_a_reused_pid_is_not_taken_for_the_service(tmp_path: Path) -> None:
    manager = ProcessManager(tmp_path)
    manager.pids_dir.mkdir(parents=True)
    (manager.pids_dir / "svc.json").write_text(f'{{"pid": {os.getpid()}, "create_time": 1.0, "argv": []}}')
    assert not manager.running("svc")
    assert manager.stop(["svc"]) == [] and psutil.pid_exists(os.getpid())


def test_down_without_a_cluster_does_nothing(tmp_path: Path) -> None:
    assert Cluster(ClusterConfig(state_dir=tmp_path)).down() == []


def test_services_do_not_inherit_the_callers_airflow_settings(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", "LocalExecutor")
    monkeypatch.setenv("AIRFLOW_CONN_LOYALTY_DB", "postgres://elsewhere")
    monkeypatch.setenv("PASSPUSH_DATABASE_URL", "postgresql://elsewhere")
    manager = ProcessManager(tmp_path)
    script = "import json, os; print(json.dumps({k: v for k, v in os.environ.items() if 'AIRFLOW' in k "\
             "or 'PASSPUSH' in k}), flush=True)"
    manager.start(ServiceSpec("env", [sys.executable, "-c", script], {"AIRFLOW__CORE__EXECUTOR": "CeleryExecutor"}))
    deadline = time.monotonic() + 10
    while "{" not in manager.log_path("env").read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    seen = manager.log_path("env").read_text().splitlines()[-1]
    assert seen == '{"AIRFLOW__CORE__EXECUTOR": "CeleryExecutor"}'
    manager.stop(["env"])
