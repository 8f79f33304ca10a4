"""The campaign page inside the real Airflow API-server app, and clients signed in as Airflow users.

``api_app`` is ``airflow.api_fastapi.app.create_app()`` (Airflow's own app: its auth manager, its
public API, the plugins folder's plugins, so the campaign page under ``/passpush``), built once per
session against the session's metadata DB after ``airflow dags reserialize`` (a launch needs the DAG).
Users are the simple auth manager's: a JWT with a role, sent as ``Authorization: Bearer`` or as the
UI's ``_token`` cookie. The loyalty database reaches the page through the Airflow connection
``loyalty_db`` (``AIRFLOW_CONN_LOYALTY_DB``), as in production; uploads go to a temporary folder.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from passpush import localdev

PAGE = "/passpush"


@pytest.fixture(scope="session")
def serialized_dags(airflow_db: str) -> str:
    """push_campaign in the metadata DB, as the dag-processor would leave it: launching needs it."""
    airflow = str(Path(sys.executable).with_name("airflow"))
    subprocess.run([airflow, "dags", "reserialize"], check=True, capture_output=True, text=True,
                   env=os.environ.copy())
    return airflow_db


@pytest.fixture(scope="session")
def api_app(serialized_dags: str) -> Any:
    from airflow.api_fastapi.app import create_app

    return create_app()


@pytest.fixture
def page_env(monkeypatch: pytest.MonkeyPatch, migrated_database_url: str, tmp_path: Path) -> Path:
    """loyalty_db points at the test database; uploads go to a folder of this test. Returns that folder."""
    monkeypatch.setenv("AIRFLOW_CONN_LOYALTY_DB", localdev.airflow_connection_json(migrated_database_url))
    monkeypatch.delenv("PASSPUSH_DATABASE_URL", raising=False)
    uploads = tmp_path / "uploads"
    monkeypatch.setenv("PASSPUSH_UPLOAD_DIR", str(uploads))
    return uploads


def token_for(username: str, role: str) -> str:
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    return get_auth_manager().generate_jwt(SimpleAuthManagerUser(username=username, role=role))


@pytest.fixture
def client_for(api_app: Any, page_env: Path) -> Iterator[Callable[..., TestClient]]:
    """TestClient factory: ``client_for("admin")`` (bearer), ``client_for("viewer", cookie=True)``, ..."""
    clients: list[TestClient] = []

    def _client(role: str | None, *, username: str | None = None, cookie: bool = False) -> TestClient:
        client = TestClient(api_app, follow_redirects=False)
        if role is not None:
            token = token_for(username or role, role)
            if cookie:
                client.cookies.set("_token", token)
            else:
                client.headers["Authorization"] = f"Bearer {token}"
        clients.append(client)
        return client

    yield _client
    for client in clients:
        client.close()


@pytest.fixture
def admin(client_for: Callable[..., TestClient]) -> TestClient:
    return client_for("admin")


@pytest.fixture
def marketing(client_for: Callable[..., TestClient]) -> TestClient:
    """A "user" role: may trigger DAGs, like a marketing admin who is not an Airflow admin."""
    return client_for("user", username="marketing")


@pytest.fixture
def viewer(client_for: Callable[..., TestClient]) -> TestClient:
    return client_for("viewer")


@pytest.fixture
def anonymous(client_for: Callable[..., TestClient]) -> TestClient:
    return client_for(None)
