"""The local Celery cluster: what ``up`` starts, in which order, and how it knows each part is ready.

    emulator          python -m passpush.emulator        ready: /_emulator/health answers
    api-server        airflow api-server                 ready: /api/v2/monitor/health answers
    scheduler         airflow scheduler                  ready: healthy in /api/v2/monitor/health
    dag-processor     airflow dag-processor              ready: healthy, and push_campaign is registered
    triggerer         airflow triggerer                  ready: healthy
    worker-1, -2      airflow celery worker              ready: Celery logs "<name>@<host> ready."

Before any of them: PostgreSQL and Redis answer, the metadata and loyalty databases exist and are
migrated, the pool and the connections are set (``provision``). ``up`` starts only what is not
running, so it also repairs a cluster with a dead part; ``down`` stops what runs, workers first.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from passpush import localdev
from passpush.cluster import preflight
from passpush.cluster.api import AirflowApi, AirflowApiError
from passpush.cluster.config import (
    ClusterConfig,
    ClusterSecrets,
    WorkerSpec,
    airflow_env,
    load_or_create_secrets,
    worker_env,
    write_password_file,
)
from passpush.cluster.errors import ClusterError
from passpush.cluster.processes import ProcessManager, ServiceSpec, isolated_environ, tail, wait_until
from passpush.cluster.provision import airflow_cli, airflow_executable, provision
from passpush.emulator.control import DEFAULT_API_KEY, DEFAULT_API_SECRET, EmulatorControl, EmulatorError
from passpush.paths import PROJECT_ROOT

log = logging.getLogger(__name__)

DAG_ID = "push_campaign"
EMULATOR = "emulator"
CORE_SERVICES = ("api-server", "scheduler", "dag-processor", "triggerer")


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    running: bool
    pid: int | None
    log: Path


class Cluster:
    def __init__(self, config: ClusterConfig) -> None:
        self.config = config
        self.processes = ProcessManager(config.state_dir, cwd=PROJECT_ROOT)
        self._secrets: ClusterSecrets | None = None

    @classmethod
    def from_state(cls, state_dir: Path, default: ClusterConfig | None = None) -> Cluster:
        """The cluster recorded in ``state_dir`` (or ``default`` when nothing was recorded there)."""
        return cls(ClusterConfig.load(state_dir) or default or ClusterConfig(state_dir=state_dir))

    # ---- pieces ---------------------------------------------------------------------------------

    @property
    def secrets(self) -> ClusterSecrets:
        if self._secrets is None:
            self._secrets = load_or_create_secrets(self.config.state_dir)
        return self._secrets

    @property
    def env(self) -> dict[str, str]:
        return airflow_env(self.config, self.secrets)

    def api(self) -> AirflowApi:
        """A REST client logged in as the cluster's admin."""
        return AirflowApi(self.config.api_url, self.config.admin_user, self.secrets.admin_password)

    def emulator_control(self) -> EmulatorControl:
        return EmulatorControl(self.config.emulator_url)

    def passkit_connection_json(self) -> str:
        return localdev.passkit_connection_json(
            self.config.emulator_url, DEFAULT_API_KEY, DEFAULT_API_SECRET,
            rate_limit_per_second=self.config.passkit_rate_limit, **self.config.passkit_extra)

    def _airflow(self, *args: str) -> list[str]:
        return [airflow_executable(), *args]

    def service_specs(self, default_program_id: str | None = None) -> dict[str, ServiceSpec]:
        env = self.env
        if default_program_id:
            env["PASSPUSH_DEFAULT_PROGRAM_ID"] = default_program_id
        emulator_argv = [sys.executable, "-m", "passpush.emulator", "--host", "127.0.0.1",
                         "--port", str(self.config.emulator_port)]
        emulator_env = {"PASSKIT_EMULATOR_CONFIG_JSON": json.dumps(self.config.emulator_settings)}
        specs = {
            EMULATOR: ServiceSpec(EMULATOR, emulator_argv, emulator_env),
            "api-server": ServiceSpec("api-server", self._airflow("api-server"), env),
            "scheduler": ServiceSpec("scheduler", self._airflow("scheduler"), env),
            "dag-processor": ServiceSpec("dag-processor", self._airflow("dag-processor"), env),
            "triggerer": ServiceSpec("triggerer", self._airflow("triggerer", "--skip-serve-logs"), env),
        }
        for worker in self.config.workers:
            specs[worker.name] = ServiceSpec(worker.name, self._worker_argv(worker), worker_env(env, worker))
        return specs

    def _worker_argv(self, worker: WorkerSpec) -> list[str]:
        return self._airflow("celery", "worker", "--celery-hostname", worker.celery_hostname,
                             "--queues", self.config.queue,
                             "--concurrency", str(self.config.worker_concurrency), "--skip-serve-logs")

    # ---- up -------------------------------------------------------------------------------------

    def up(self, timeout: float = 300) -> None:
        """Start whatever is not running, after checking and provisioning what it needs."""
        config = self.config
        preflight.check_postgres(config.postgres_url)
        preflight.check_redis(config.redis_url)
        self._check_ports()
        config.save()
        write_password_file(config, self.secrets)
        self._provision()
        emulator_started = self._start_emulator()
        program_id = self._default_program(fresh_emulator=emulator_started)
        specs = self.service_specs(program_id)
        deadline = time.monotonic() + timeout
        self._start_and_wait(specs["api-server"], self._api_answers, deadline)
        for name in ("scheduler", "dag-processor", "triggerer"):
            self.processes.start(specs[name])
        self.start_workers([w.name for w in config.workers], deadline - time.monotonic(), specs)
        api = self.api()
        self._wait(api.healthy, deadline, "scheduler, dag-processor and triggerer", CORE_SERVICES)
        self._wait(lambda: _dag_registered(api), deadline, f"DAG {DAG_ID} in the API", ("dag-processor",))

    def _check_ports(self) -> None:
        ports = {}
        if not self.processes.running("api-server"):
            ports["API server"] = self.config.api_port
        if not self.processes.running(EMULATOR):
            ports["PassKit emulator"] = self.config.emulator_port
        preflight.check_ports_free(ports)

    def _provision(self) -> None:
        from passpush.db.embedded import ensure_database

        ensure_database(self.config.conninfo("postgres"), self.config.metadata_db)
        provision(isolated_environ(self.env), self.config.loyalty_conninfo, self.passkit_connection_json(),
                  self.config.pool_slots)

    def _start_emulator(self) -> bool:
        if self.processes.running(EMULATOR):
            return False
        self._start_and_wait(self.service_specs()[EMULATOR], self._emulator_answers, time.monotonic() + 30)
        return True

    def _default_program(self, fresh_emulator: bool) -> str | None:
        """The trigger form's default program, seeded for demos whenever the (in-memory) emulator is new."""
        from passpush.seed import SeedSpec, seed_program

        marker = self.config.state_dir / "default_program_id"
        if self.config.demo_members <= 0:
            return None
        if not fresh_emulator and marker.exists():
            return marker.read_text().strip()
        spec = SeedSpec(members=self.config.demo_members, seed=int(time.time()))
        program = seed_program(self.config.loyalty_conninfo, spec, self.emulator_control())
        marker.write_text(program.program_id)
        log.info("seeded demo program %s (%d members) in the database and the emulator",
                 program.program_id, program.members)
        return program.program_id

    def start_workers(self, names: Sequence[str], timeout: float = 120,
                      specs: Mapping[str, ServiceSpec] | None = None) -> None:
        """Start the workers not running yet, together, and wait until Celery says each is ready."""
        specs = specs or self.service_specs()
        waits = {}
        for name in names:
            if not self.processes.running(name):
                waits[name] = _log_mark(self.processes.log_path(name), rf"{re.escape(name)}@\S+ ready\.")
                self.processes.start(specs[name])
        deadline = time.monotonic() + timeout
        for name, ready in waits.items():
            self._wait(ready, deadline, name, (name,))

    def _start_and_wait(self, spec: ServiceSpec, ready: Callable[[], bool], deadline: float) -> None:
        self.processes.start(spec)
        self._wait(ready, deadline, spec.name, (spec.name,))

    def _wait(self, ready: Callable[[], bool], deadline: float, what: str, services: tuple[str, ...]) -> None:
        """Wait for ``ready()``; fail early, with the log's tail, if one of ``services`` died."""

        def check() -> bool:
            for name in services:
                if not self.processes.running(name):
                    raise ClusterError(f"{name} exited while starting; last lines of "
                                       f"{self.processes.log_path(name)}:\n{tail(self.processes.log_path(name))}")
            return bool(ready())

        try:
            wait_until(check, max(1.0, deadline - time.monotonic()), what)
        except TimeoutError as err:
            logs = ", ".join(str(self.processes.log_path(name)) for name in services)
            raise ClusterError(f"{err}; see {logs}") from err

    def _api_answers(self) -> bool:
        try:
            self.api().health()
        except AirflowApiError:
            return False
        return True

    def _emulator_answers(self) -> bool:
        try:
            self.emulator_control().health()
        except EmulatorError:
            return False
        return True

    # ---- down, status -----------------------------------------------------------------------------

    def down(self) -> list[str]:
        """Stop everything that runs (workers first, emulator last); the names of what was stopped."""
        workers = [w.name for w in self.config.workers]
        core = [*CORE_SERVICES, *(n for n in self.processes.names() if n not in {*workers, *CORE_SERVICES})]
        return self.processes.stop(workers) + self.processes.stop(core)

    def status(self) -> list[ServiceStatus]:
        names = [EMULATOR, *CORE_SERVICES, *(w.name for w in self.config.workers)]
        result = []
        for name in names:
            proc = self.processes.process(name)
            result.append(ServiceStatus(name, proc is not None, proc.pid if proc else None,
                                        self.processes.log_path(name)))
        return result

    def kill_worker(self, name: str) -> bool:
        """SIGKILL a worker and every process under it (its running tasks die with it)."""
        return self.processes.kill(name)

    def drop_databases(self) -> None:
        """Drop the metadata and loyalty databases (tests; the cluster must be down)."""
        from passpush.db.embedded import drop_database

        admin = self.config.conninfo("postgres")
        for name in (self.config.metadata_db, self.config.loyalty_db):
            drop_database(admin, name)

    def airflow(self, *args: str) -> str:
        """Run an ``airflow`` CLI command against this cluster."""
        return airflow_cli(list(args), isolated_environ(self.env))


def _dag_registered(api: AirflowApi) -> bool:
    try:
        api.dag(DAG_ID)
    except AirflowApiError as err:
        if err.status == 404:
            return False
        raise
    return True


def _log_mark(path: Path, pattern: str) -> Callable[[], bool]:
    """A readiness check: has ``pattern`` appeared in the log since now?"""
    offset = path.stat().st_size if path.exists() else 0
    regex = re.compile(pattern)

    def seen() -> bool:
        if not path.exists():
            return False
        with path.open("rb") as handle:
            handle.seek(offset)
            return bool(regex.search(handle.read().decode(errors="replace")))

    return seen
