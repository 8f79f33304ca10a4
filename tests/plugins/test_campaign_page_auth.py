"""Who may use the campaign page: every route needs a signed-in Airflow user, launching needs trigger rights.

Requests go through Airflow's whole API-server app (its middlewares, auth manager and the plugin's
mount), so what is tested is what a browser meets.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from starlette.routing import Mount

from passpush.campaign_page.settings import URL_PREFIX

pytestmark = [pytest.mark.airflow, pytest.mark.postgres]


def _page_app(api_app: Any) -> Any:
    return next(r for r in api_app.routes if isinstance(r, Mount) and r.path == URL_PREFIX).app.app


def _page_routes(api_app: Any) -> list[tuple[str, str]]:
    """(method, path) of every route of the mounted campaign page, path parameters filled in."""
    routes = []
    for route in _page_app(api_app).routes:
        if isinstance(route, APIRoute):
            path = route.path.replace("{campaign_id}", str(uuid.uuid4())).replace("{name}", "app.js")
            routes.extend((method, URL_PREFIX + path) for method in sorted(route.methods))
    return routes


def test_the_page_has_the_routes_these_tests_cover(api_app: Any) -> None:
    paths = {route.path for route in _page_app(api_app).routes if isinstance(route, APIRoute)}

    assert paths == {"/", "/static/{name}", "/api/session", "/api/programs", "/api/segments", "/api/preview",
                     "/api/uploads", "/api/launch", "/api/campaigns", "/api/campaigns/{campaign_id}"}


def test_every_route_refuses_an_anonymous_request(api_app: Any, anonymous: TestClient,
                                                  page_env: Path) -> None:
    for method, path in _page_routes(api_app):
        response = anonymous.request(method, path, json={} if method == "POST" else None)
        if path == f"{URL_PREFIX}/":
            assert response.status_code == 303, (method, path)
            assert response.headers["location"].startswith("/auth/login?next="), response.headers
        else:
            assert response.status_code == 401, (method, path, response.text)
    assert not page_env.exists(), "an anonymous upload must not store anything"


def test_a_forged_token_is_refused(client_for: Callable[..., TestClient]) -> None:
    forged = client_for(None)
    forged.headers["Authorization"] = "Bearer eyJhbGciOiJIUzUxMiJ9.eyJzdWIiOiJhZG1pbiJ9.c2lnbmF0dXJl"
    for path in ("session", "campaigns"):
        assert forged.get(f"{URL_PREFIX}/api/{path}").status_code in (401, 403)
    response = forged.post(f"{URL_PREFIX}/api/launch", json={})
    assert response.status_code in (401, 403)


def test_the_ui_cookie_signs_in_like_the_bearer_token(client_for: Callable[..., TestClient]) -> None:
    browser = client_for("admin", username="alice", cookie=True)

    response = browser.get(f"{URL_PREFIX}/api/session")

    assert response.status_code == 200
    assert response.json()["user"] == "alice"
    page = browser.get(f"{URL_PREFIX}/")
    assert page.status_code == 200
    assert "Push campaigns" in page.text


def test_a_viewer_reads_the_history_but_may_not_preview_upload_or_launch(viewer: TestClient) -> None:
    session = viewer.get(f"{URL_PREFIX}/api/session")
    assert session.status_code == 200
    assert session.json()["can_launch"] is False
    for path in ("programs", "segments", "campaigns"):
        assert viewer.get(f"{URL_PREFIX}/api/{path}").status_code == 200, path

    form = {"program_id": str(uuid.uuid4()), "name": "x", "message": "hi"}
    assert viewer.post(f"{URL_PREFIX}/api/preview", json=form).status_code == 403
    assert viewer.post(f"{URL_PREFIX}/api/launch", json={**form, "confirm_recipients": 1}).status_code == 403
    csv = {"file": ("ids.csv", b"member_id\nA1\n", "text/csv")}
    upload = viewer.post(f"{URL_PREFIX}/api/uploads", files=csv)
    assert upload.status_code == 403


def test_a_user_who_may_trigger_dags_may_launch(marketing: TestClient, admin: TestClient) -> None:
    assert marketing.get(f"{URL_PREFIX}/api/session").json()["can_launch"] is True
    assert admin.get(f"{URL_PREFIX}/api/session").json()["can_launch"] is True


def test_a_post_from_another_origin_is_refused(admin: TestClient) -> None:
    response = admin.post(f"{URL_PREFIX}/api/preview", json={"program_id": "x"},
                          headers={"Origin": "https://evil.example"})

    assert response.status_code == 403
    assert "cross-origin" in response.json()["detail"]


def test_a_post_from_the_page_itself_passes_the_origin_check(admin: TestClient) -> None:
    for headers in ({"Origin": "http://testserver"},
                    {"Origin": "https://airflow.example.com", "X-Forwarded-Host": "airflow.example.com"}):
        response = admin.post(f"{URL_PREFIX}/api/preview", json={"program_id": "x"}, headers=headers)
        assert response.status_code == 422, (headers, response.text)  # past the check, refused for the form


def test_only_the_page_files_are_served(admin: TestClient) -> None:
    script = admin.get(f"{URL_PREFIX}/static/app.js")
    assert script.status_code == 200
    assert script.headers["content-type"].startswith("text/javascript")
    assert admin.get(f"{URL_PREFIX}/static/app.css").headers["content-type"].startswith("text/css")
    for name in ("index.html", "settings.py", "..%2Fsettings.py", "%2E%2E%2Fapp.py"):
        assert admin.get(f"{URL_PREFIX}/static/{name}").status_code == 404, name
    assert admin.get(f"{URL_PREFIX}/static/../app.py").status_code == 404


def test_there_is_no_anonymous_api_description(anonymous: TestClient) -> None:
    for path in ("openapi.json", "docs", "redoc"):
        assert anonymous.get(f"{URL_PREFIX}/{path}").status_code in (401, 404), path
