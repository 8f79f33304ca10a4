"""The loyalty database's conninfo from the Airflow connection loyalty_db, as a deployment defines it."""

from __future__ import annotations

import json

import pytest
from psycopg.conninfo import conninfo_to_dict

from passpush.db.connection import conninfo_from_airflow


def test_every_libpq_parameter_in_the_extra_reaches_libpq(monkeypatch: pytest.MonkeyPatch) -> None:
    """channel_binding, keepalives and the like were dropped without a word: a connection the deployer
    required channel binding for connected without it."""
    extra = {"sslmode": "require", "channel_binding": "require", "keepalives_idle": "30",
             "tcp_user_timeout": 10000, "sslpassword": "key pass", "cursor": "dictcursor", "host": "elsewhere"}
    monkeypatch.setenv("AIRFLOW_CONN_LOYALTY_DB", json.dumps({
        "conn_type": "postgres", "host": "db.example", "port": 6543, "schema": "loyalty", "login": "u",
        "password": "p@ss/w:rd", "extra": extra}))

    params = conninfo_to_dict(conninfo_from_airflow())

    assert params == {"host": "db.example", "port": "6543", "dbname": "loyalty", "user": "u",
                      "password": "p@ss/w:rd", "sslmode": "require", "channel_binding": "require",
                      "keepalives_idle": "30", "tcp_user_timeout": "10000", "sslpassword": "key pass"}
