"""Apply the SQL migrations in ``sql/migrations/`` with yoyo.

yoyo records what ran in its own tables (``_yoyo_migration``, ``_yoyo_log``), applies each
file in its own transaction, in file-name order, and takes a lock so two processes starting at
once (the demo and Airflow, two tests) do not apply the same file twice.
"""

from __future__ import annotations

import logging
from pathlib import Path

from yoyo import get_backend, read_migrations

from passpush.paths import MIGRATIONS_DIR

log = logging.getLogger(__name__)


def yoyo_url(conninfo: str) -> str:
    """yoyo wants a URL with the psycopg (3) driver; accept libpq URLs and key=value strings."""
    if conninfo.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + conninfo.split("://", 1)[1]
    from psycopg.conninfo import conninfo_to_dict

    params = conninfo_to_dict(conninfo)
    host = params.pop("host", "")
    query = "&".join(f"{k}={v}" for k, v in params.items() if k not in {"user", "password", "dbname", "port"})
    user = params.get("user", "")
    password = f":{params['password']}" if params.get("password") else ""
    port = f":{params['port']}" if params.get("port") else ""
    auth = f"{user}{password}@" if user else ""
    if host.startswith("/"):
        query = f"host={host}" + (f"&{query}" if query else "")
        host = ""
    return f"postgresql+psycopg://{auth}{host}{port}/{params.get('dbname', '')}" + (f"?{query}" if query else "")


def apply_migrations(conninfo: str, migrations_dir: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply every pending migration; return the ids applied now (empty when up to date)."""
    backend = get_backend(yoyo_url(conninfo))
    migrations = read_migrations(str(migrations_dir))
    with backend.lock():
        pending = backend.to_apply(migrations)
        backend.apply_migrations(pending)
    applied = [m.id for m in pending]
    if applied:
        log.info("applied migrations: %s", ", ".join(applied))
    return applied
