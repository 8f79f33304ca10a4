"""Database access for passpush: where the loyalty database is, and how to reach it.

`connection.py` resolves a connection string (an Airflow connection, an environment variable or
the embedded server), `embedded.py` runs a private PostgreSQL when nothing else is configured,
and `migrations.py` applies `sql/migrations/` with yoyo.
"""

from passpush.db.connection import connect, conninfo_from_airflow, resolve_conninfo

__all__ = ["connect", "conninfo_from_airflow", "resolve_conninfo"]
