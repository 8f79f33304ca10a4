"""Resolve and open connections to the loyalty database.

Order of precedence, so the same code runs in tests, the demo and production:
1. an explicit conninfo passed by the caller;
2. the Airflow connection ``loyalty_db`` (inside tasks);
3. ``PASSPUSH_DATABASE_URL``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache

import psycopg
from psycopg.conninfo import make_conninfo

LOYALTY_CONN_ID = "loyalty_db"
DATABASE_URL_ENV = "PASSPUSH_DATABASE_URL"


class DatabaseNotConfiguredError(RuntimeError):
    """No loyalty database could be found."""


def conninfo_from_airflow(conn_id: str = LOYALTY_CONN_ID) -> str:
    """Build a libpq conninfo from an Airflow connection (Postgres type).

    Extras that are libpq parameters are passed through (sslmode, options, channel_binding, keepalives_idle,
    ...), so a Supabase connection that needs ``sslmode=require`` only needs it in the connection's extra.
    """
    from airflow.sdk import BaseHook

    conn = BaseHook.get_connection(conn_id)
    params: dict[str, object] = {
        "host": conn.host or None,
        "port": conn.port or None,
        "dbname": conn.schema or None,
        "user": conn.login or None,
        "password": conn.password or None,
    }
    extra = conn.extra_dejson or {}
    params.update({k: v for k, v in extra.items() if k in _libpq_extras()})
    return make_conninfo(**{k: v for k, v in params.items() if v is not None})


@cache
def _libpq_extras() -> frozenset[str]:
    """libpq parameters an Airflow connection's extra may carry (the fields own host, port, database, user and
    password); anything else there, such as the Postgres provider's own ``cursor``, is ignored."""
    keywords = {d.keyword.decode() for d in psycopg.pq.Conninfo.get_defaults()}
    return frozenset(keywords - {"host", "port", "dbname", "user", "password"})


def resolve_conninfo(conninfo: str | None = None, *, conn_id: str = LOYALTY_CONN_ID) -> str:
    """Return the conninfo to use, trying the caller's, then Airflow's, then the environment's."""
    if conninfo:
        return conninfo
    try:
        return conninfo_from_airflow(conn_id)
    except Exception as err:  # Airflow raises its own "not found" types, which differ by context
        env_url = os.environ.get(DATABASE_URL_ENV)
        if env_url:
            return env_url
        raise DatabaseNotConfiguredError(
            f"no loyalty database: define the Airflow connection {conn_id!r} "
            f"or set {DATABASE_URL_ENV} (lookup failed: {err})"
        ) from err


@contextmanager
def connect(conninfo: str, *, autocommit: bool = False, application_name: str = "passpush") -> Iterator[
    psycopg.Connection
]:
    """Open one connection; commits on success, rolls back on error, always closes."""
    conn = psycopg.connect(conninfo, autocommit=autocommit, application_name=application_name)
    try:
        with conn:
            yield conn
    finally:
        conn.close()
