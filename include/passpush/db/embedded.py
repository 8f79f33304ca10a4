"""A private PostgreSQL server for machines where no database is configured.

pgserver ships PostgreSQL binaries in its wheel, so `make demo` and the tests work on a
fresh machine. The server listens on a Unix socket inside the data directory and is left
running (cleanup_mode=None) so that the demo, Airflow and its tasks all reach the same one.
"""

from __future__ import annotations

import logging
from pathlib import Path

import psycopg
from psycopg import sql

log = logging.getLogger(__name__)


def start_embedded(data_dir: Path, database: str = "passpush", *, keep_running: bool = True) -> str:
    """Start (or reuse) the embedded server in ``data_dir`` and return a conninfo for ``database``.

    ``keep_running`` leaves the server up when this process exits (the demo hands it to Airflow);
    tests pass False so the server stops with the test session.
    """
    import pgserver

    data_dir.mkdir(parents=True, exist_ok=True)
    # pgserver logs from an atexit hook, after pytest has closed the streams: keep it quiet.
    logging.getLogger("pgserver").setLevel(logging.WARNING)
    server = pgserver.get_server(data_dir, cleanup_mode=None if keep_running else "stop")
    admin_uri = server.get_uri("postgres")
    ensure_database(admin_uri, database)
    uri = server.get_uri(database)
    log.info("embedded PostgreSQL ready in %s", data_dir)
    return uri


def ensure_database(admin_conninfo: str, database: str) -> None:
    """Create ``database`` on the server reached by ``admin_conninfo`` if it does not exist."""
    with psycopg.connect(admin_conninfo, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))


def drop_database(admin_conninfo: str, database: str) -> None:
    """Drop ``database``, disconnecting whoever is still on it (test clean-up)."""
    with psycopg.connect(admin_conninfo, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database)))
