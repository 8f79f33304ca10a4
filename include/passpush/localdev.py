"""The local stack used by ``make demo``, ``make airflow`` and the tests.

Nothing configured: an embedded PostgreSQL in ``.state/pgdata`` and the PassKit emulator.
Configured: ``PASSPUSH_DATABASE_URL`` names the loyalty database, and
``AIRFLOW_CONN_PASSKIT_DEFAULT`` a real PassKit (then no emulator is started).
Airflow gets a project-local ``AIRFLOW_HOME`` (``.state/airflow``) and its connections as
``AIRFLOW_CONN_*`` environment variables, so nothing secret is written to a file in the repo.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from psycopg.conninfo import conninfo_to_dict

from passpush.db.connection import DATABASE_URL_ENV
from passpush.paths import PROJECT_ROOT, STATE_DIR

POOL_NAME = "passkit_api"
DEFAULT_POOL_SLOTS = 4


def airflow_connection_json(conninfo: str) -> str:
    """A Postgres conninfo (URL or key=value, socket or TCP) as an Airflow connection in JSON form."""
    params = conninfo_to_dict(conninfo)
    conn: dict[str, object] = {"conn_type": "postgres", "host": params.get("host") or "127.0.0.1",
                               "login": params.get("user") or "postgres", "schema": params.get("dbname") or ""}
    if params.get("port"):
        conn["port"] = int(params["port"])
    if params.get("password"):
        conn["password"] = params["password"]
    return json.dumps(conn)


def passkit_connection_json(base_url: str, api_key: str, api_secret: str, **extra: object) -> str:
    return json.dumps({"conn_type": "http", "host": base_url, "login": api_key, "password": api_secret,
                       "extra": extra})


def airflow_env(loyalty_conninfo: str, passkit_conn_json: str | None, *,
                airflow_home: Path | None = None) -> dict[str, str]:
    """Environment for any Airflow process of the local stack (CLI, standalone, dag.test)."""
    home = airflow_home or STATE_DIR / "airflow"
    home.mkdir(parents=True, exist_ok=True)
    env = {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT_ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        "AIRFLOW_CONN_LOYALTY_DB": airflow_connection_json(loyalty_conninfo),
        DATABASE_URL_ENV: loyalty_conninfo,
        "PASSPUSH_PROJECT_ROOT": str(PROJECT_ROOT),
    }
    if passkit_conn_json:
        env["AIRFLOW_CONN_PASSKIT_DEFAULT"] = passkit_conn_json
    return env


def airflow_command(args: list[str], env: dict[str, str], *, timeout: float | None = None,
                    check: bool = True, capture: bool = False) -> subprocess.CompletedProcess[str]:
    """Run the project's ``airflow`` CLI with the local stack's environment."""
    bin_dir = Path(sys.executable).parent
    # `airflow standalone` starts its components as `airflow ...` from PATH: make it this venv's.
    path = f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"
    return subprocess.run([str(bin_dir / "airflow"), *args], env={**os.environ, **env, "PATH": path},
                          timeout=timeout, check=check, text=True, capture_output=capture)


def prepare_airflow(env: dict[str, str], pool_slots: int = DEFAULT_POOL_SLOTS) -> None:
    """Migrate Airflow's metadata DB (SQLite in AIRFLOW_HOME) and create the passkit_api pool."""
    airflow_command(["db", "migrate"], env, capture=True)
    airflow_command(["pools", "set", POOL_NAME, str(pool_slots),
                     "PassKit API: caps concurrent send_batch tasks (the rate limit is global)"],
                    env, capture=True)


def local_database(database: str = "passpush", *, fresh: bool = False) -> str:
    """PASSPUSH_DATABASE_URL when set, else a database on the embedded server; migrated."""
    from passpush.db.embedded import drop_database, ensure_database, start_embedded
    from passpush.db.migrations import apply_migrations

    url = os.environ.get(DATABASE_URL_ENV)
    if url:
        if fresh:
            raise RuntimeError(f"refusing to recreate {DATABASE_URL_ENV}; it is not a scratch database")
        apply_migrations(url)
        return url
    server_uri = start_embedded(STATE_DIR / "pgdata", database="postgres")
    if fresh:
        drop_database(server_uri, database)
    ensure_database(server_uri, database)
    params = conninfo_to_dict(server_uri)
    params["dbname"] = database
    from psycopg.conninfo import make_conninfo

    conninfo = make_conninfo(**params)
    apply_migrations(conninfo)
    return conninfo
