"""Idempotent set-up of an Airflow deployment for passpush: what ``cluster up`` and compose's init share.

1. the loyalty database exists and is migrated (``sql/migrations``, yoyo);
2. Airflow's metadata database is migrated (``airflow db migrate``);
3. the ``passkit_api`` pool has its slots;
4. the connections ``loyalty_db`` and ``passkit_default`` are in the metadata database (overwritten).

Steps 2-4 use the ``airflow`` CLI of this environment with the complete environment ``env`` the caller
gives (``AIRFLOW__DATABASE__SQL_ALCHEMY_CONN``, ``AIRFLOW__CORE__FERNET_KEY``, ...): in a container that
is ``os.environ``; the local cluster passes its own, isolated from the caller's shell.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

from psycopg.conninfo import conninfo_to_dict, make_conninfo

from passpush import localdev
from passpush.cluster.errors import ClusterError

log = logging.getLogger(__name__)

LOYALTY_CONN_ID = "loyalty_db"
PASSKIT_CONN_ID = "passkit_default"


def airflow_executable() -> str:
    """The ``airflow`` script next to this Python (the project's virtualenv, or the image's)."""
    return str(Path(sys.executable).with_name("airflow"))


def airflow_cli(args: list[str], env: Mapping[str, str], timeout: float = 300) -> str:
    """Run this environment's ``airflow`` CLI with exactly ``env``; ClusterError with its output on failure."""
    proc = subprocess.run([airflow_executable(), *args], env=dict(env), capture_output=True,
                          text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        output = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise ClusterError(f"`airflow {' '.join(args[:2])}` failed ({proc.returncode}):\n{output}")
    return proc.stdout


def ensure_loyalty_database(conninfo: str) -> list[str]:
    """Create the loyalty database if missing (through the server's ``postgres`` database), then migrate."""
    from passpush.db.embedded import ensure_database
    from passpush.db.migrations import apply_migrations

    params = conninfo_to_dict(conninfo)
    dbname = params.get("dbname")
    if not dbname:
        raise ClusterError(f"the loyalty database URL names no database: {_redacted(conninfo)}")
    ensure_database(make_conninfo(**{**params, "dbname": "postgres"}), str(dbname))
    return apply_migrations(conninfo)


def set_pool(env: Mapping[str, str], slots: int) -> None:
    airflow_cli(["pools", "set", localdev.POOL_NAME, str(slots),
                 "PassKit API: caps concurrent send_batch tasks (the request rate is global)"], env)


def set_connections(env: Mapping[str, str], connections: Mapping[str, str]) -> None:
    """Import ``{conn_id: connection JSON}`` with overwrite, through a private temporary file."""
    payload = {conn_id: json.loads(conn_json) for conn_id, conn_json in connections.items()}
    fd, name = tempfile.mkstemp(prefix="passpush-connections-", suffix=".json")  # mode 0600
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(payload, handle)
        airflow_cli(["connections", "import", "--overwrite", name], env)
    finally:
        os.unlink(name)


def provision(env: Mapping[str, str], loyalty_conninfo: str, passkit_conn_json: str, pool_slots: int, *,
              migrate_airflow: bool = True) -> None:
    """Every step, in order; safe to repeat."""
    applied = ensure_loyalty_database(loyalty_conninfo)
    log.info("loyalty database: %s", f"applied {', '.join(applied)}" if applied else "up to date")
    if migrate_airflow:
        airflow_cli(["db", "migrate"], env, timeout=600)
        log.info("Airflow metadata database migrated")
    set_pool(env, pool_slots)
    set_connections(env, {LOYALTY_CONN_ID: localdev.airflow_connection_json(loyalty_conninfo),
                          PASSKIT_CONN_ID: passkit_conn_json})
    log.info("pool %s (%d slots) and connections %s, %s set", localdev.POOL_NAME, pool_slots,
             LOYALTY_CONN_ID, PASSKIT_CONN_ID)


def _redacted(conninfo: str) -> str:
    params = conninfo_to_dict(conninfo)
    if params.get("password"):
        params["password"] = "***"
    return make_conninfo(**params)
