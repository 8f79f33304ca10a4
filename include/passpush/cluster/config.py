"""What a local cluster is made of: databases, broker, ports, workers, and the environment of its processes.

A ``ClusterConfig`` is plain data. ``make cluster-up`` builds it from ``PASSPUSH_CLUSTER_*`` variables
(``from_env``), saves it as ``cluster.json`` in its state folder, and ``status`` / ``down`` read it back.
Secrets (Fernet key, JWT secret, the admin's password) are generated once per state folder and kept
in ``secrets.json`` (mode 0600), so a restarted cluster can still decrypt its connections.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import quote

from psycopg.conninfo import conninfo_to_dict, make_conninfo

from passpush.cluster.hostname import WORKER_HOSTNAME_ENV
from passpush.paths import PROJECT_ROOT, STATE_DIR

DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
HOSTNAME_CALLABLE = "passpush.cluster.hostname.worker_hostname"
CONFIG_FILE = "cluster.json"
SECRETS_FILE = "secrets.json"

# What the emulator enforces: a little above what passpush is told to send, so going over shows.
DEFAULT_EMULATOR_SETTINGS: dict[str, Any] = {
    "rate_limit_per_second": 120, "rate_limit_burst": 24, "latency_ms_min": 20, "latency_ms_max": 60}


@dataclass(frozen=True)
class WorkerSpec:
    """One Celery worker: its name doubles as the hostname its task instances report."""

    name: str

    @property
    def celery_hostname(self) -> str:
        return f"{self.name}@%h"


@dataclass(frozen=True)
class ClusterConfig:
    state_dir: Path = STATE_DIR / "cluster"
    postgres_url: str = DEFAULT_POSTGRES_URL  # any database on the server: used to create the two below
    metadata_db: str = "passpush_airflow"
    loyalty_db: str = "passpush_loyalty"
    redis_url: str = DEFAULT_REDIS_URL
    queue: str = "default"
    api_port: int = 8080
    emulator_port: int = 8765
    workers: tuple[WorkerSpec, ...] = (WorkerSpec("worker-1"), WorkerSpec("worker-2"))
    worker_concurrency: int = 2
    pool_slots: int = 4
    passkit_rate_limit: float = 100.0
    passkit_extra: dict[str, Any] = field(default_factory=lambda: {"metadata_update": "merge"})
    emulator_settings: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_EMULATOR_SETTINGS))
    heartbeat_timeout_seconds: int = 60
    admin_user: str = "admin"
    demo_members: int = 5000  # a program seeded when the emulator starts; 0: none

    # ---- derived -------------------------------------------------------------------------------

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def emulator_url(self) -> str:
        return f"http://127.0.0.1:{self.emulator_port}"

    @property
    def logs_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def airflow_home(self) -> Path:
        return self.state_dir / "airflow-home"

    def conninfo(self, dbname: str) -> str:
        params = conninfo_to_dict(self.postgres_url)
        params["dbname"] = dbname
        return make_conninfo(**params)

    @property
    def loyalty_conninfo(self) -> str:
        return self.conninfo(self.loyalty_db)

    @property
    def metadata_sqlalchemy_url(self) -> str:
        return sqlalchemy_url(self.conninfo(self.metadata_db))

    # ---- persistence ---------------------------------------------------------------------------

    def to_json(self) -> str:
        data = asdict(self)
        data["state_dir"] = str(self.state_dir)
        return json.dumps(data, indent=2)

    @classmethod
    def from_json(cls, text: str) -> ClusterConfig:
        data = json.loads(text)
        data["state_dir"] = Path(data["state_dir"])
        data["workers"] = tuple(WorkerSpec(**w) for w in data["workers"])
        return cls(**data)

    def save(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        (self.state_dir / CONFIG_FILE).write_text(self.to_json())

    @classmethod
    def load(cls, state_dir: Path) -> ClusterConfig | None:
        path = state_dir / CONFIG_FILE
        return cls.from_json(path.read_text()) if path.exists() else None


_ENV_OVERRIDES: tuple[tuple[str, str, type], ...] = (
    ("postgres_url", "POSTGRES_URL", str), ("redis_url", "REDIS_URL", str), ("api_port", "API_PORT", int),
    ("emulator_port", "EMULATOR_PORT", int), ("queue", "QUEUE", str), ("demo_members", "DEMO_MEMBERS", int))


def from_env(environ: Mapping[str, str] | None = None, state_dir: Path | None = None) -> ClusterConfig:
    """The cluster of ``state_dir`` (``PASSPUSH_CLUSTER_STATE_DIR``, else ``.state/cluster``): what was
    recorded there by the last ``up``, or the defaults, with ``PASSPUSH_CLUSTER_*`` variables on top."""
    env = os.environ if environ is None else environ
    state_dir = state_dir or Path(env.get("PASSPUSH_CLUSTER_STATE_DIR") or ClusterConfig().state_dir)
    base = ClusterConfig.load(state_dir) or ClusterConfig(state_dir=state_dir)
    overrides: dict[str, Any] = {}
    for name, key, kind in _ENV_OVERRIDES:
        value = env.get(f"PASSPUSH_CLUSTER_{key}")
        if value:
            overrides[name] = kind(value)
    return replace(base, **overrides)


def sqlalchemy_url(conninfo: str) -> str:
    """A libpq conninfo as the SQLAlchemy URL Airflow's metadata connection wants (psycopg2 driver)."""
    params = conninfo_to_dict(conninfo)
    user = quote(str(params.get("user") or "postgres"), safe="")
    password = f":{quote(str(params['password']), safe='')}" if params.get("password") else ""
    host = params.get("host") or "127.0.0.1"
    port = f":{params['port']}" if params.get("port") else ""
    return f"postgresql+psycopg2://{user}{password}@{host}{port}/{params.get('dbname', '')}"


# ---- secrets ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClusterSecrets:
    fernet_key: str
    jwt_secret: str
    admin_password: str


def load_or_create_secrets(state_dir: Path) -> ClusterSecrets:
    """The cluster's secrets, created on first use in ``secrets.json`` (readable by the owner only)."""
    path = state_dir / SECRETS_FILE
    if path.exists():
        return ClusterSecrets(**json.loads(path.read_text()))
    from cryptography.fernet import Fernet

    created = ClusterSecrets(fernet_key=Fernet.generate_key().decode(), jwt_secret=secrets.token_urlsafe(48),
                             admin_password=secrets.token_urlsafe(16))
    state_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(asdict(created), handle)
    return created


def write_password_file(config: ClusterConfig, cluster_secrets: ClusterSecrets) -> Path:
    """The simple auth manager's password file, written before the API server starts so we know it."""
    path = config.state_dir / "simple_auth_manager_passwords.json"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump({config.admin_user: cluster_secrets.admin_password}, handle)
    return path


# ---- the processes' environment ----------------------------------------------------------------------


def airflow_env(config: ClusterConfig, cluster_secrets: ClusterSecrets) -> dict[str, str]:
    """Environment shared by every Airflow process of the cluster (and its CLI calls).

    Connections are not in it: they live in the metadata database, so workers get them through
    the API server as they would on other machines. Task logs are files in one folder that every
    process sees, so no log server runs (workers and triggerer start with ``--skip-serve-logs``).
    """
    config.airflow_home.mkdir(parents=True, exist_ok=True)
    metadata = config.metadata_sqlalchemy_url
    return {
        "AIRFLOW_HOME": str(config.airflow_home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT_ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__CORE__FERNET_KEY": cluster_secrets.fernet_key,
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{config.api_url}/execution/",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{config.admin_user}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(
            config.state_dir / "simple_auth_manager_passwords.json"),
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(config.api_port),
        "AIRFLOW__API__BASE_URL": config.api_url,
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__API_AUTH__JWT_SECRET": cluster_secrets.jwt_secret,
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata,
        "AIRFLOW__CELERY__BROKER_URL": config.redis_url,
        "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{metadata}",
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(config.worker_concurrency),
        "AIRFLOW__OPERATORS__DEFAULT_QUEUE": config.queue,
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": str(config.heartbeat_timeout_seconds),
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(config.logs_dir / "tasks"),
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        "PASSPUSH_PROJECT_ROOT": str(PROJECT_ROOT),
        "PYTHONUNBUFFERED": "1",
    }


def worker_env(base: dict[str, str], worker: WorkerSpec) -> dict[str, str]:
    """A worker's own addition: the hostname its task instances report."""
    return {**base, WORKER_HOSTNAME_ENV: worker.name, "AIRFLOW__CORE__HOSTNAME_CALLABLE": HOSTNAME_CALLABLE}
