"""Load the SQL files under ``sql/queries/`` once per process."""

from __future__ import annotations

from functools import cache

from psycopg import sql

from passpush.paths import QUERIES_DIR


@cache
def load(name: str) -> str:
    return (QUERIES_DIR / f"{name}.sql").read_text()


def composed(name: str, **fragments: sql.Composable) -> sql.Composed:
    """A query file with ``{name}`` slots filled by SQL fragments (identifiers, compiled expressions)."""
    return sql.SQL(load(name)).format(**fragments)  # type: ignore[arg-type]
