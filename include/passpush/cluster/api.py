"""A small client of Airflow's public REST API (``/api/v2``), authenticated as the UI is.

The UI logs in, gets a JWT from the API server's ``/auth/token`` (simple auth manager: user and
password) and sends it as a bearer token; ``trigger`` posts the same body the trigger form posts.
Standard library only, so scripts and tests can use it without the rest of Airflow.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from passpush.cluster.errors import ClusterError

FINISHED_RUN_STATES = frozenset({"success", "failed"})


class AirflowApiError(ClusterError):
    """The API answered an error (``status`` is the HTTP status) or did not answer."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class AirflowApi:
    def __init__(self, base_url: str, username: str | None = None, password: str | None = None,
                 timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.username = username
        self.password = password
        self.timeout = timeout
        self._token: str | None = None

    # ---- transport -------------------------------------------------------------------------------

    def _request(self, method: str, path: str, body: Any = None, *, auth: bool = True,
                 query: dict[str, Any] | None = None) -> Any:
        url = f"{self.base_url}{path}"
        if query:
            url += "?" + urllib.parse.urlencode(query, doseq=True)
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if auth:
            headers["Authorization"] = f"Bearer {self.token()}"
        request = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as err:
            detail = err.read().decode(errors="replace")[:500]
            raise AirflowApiError(f"{method} {url} answered {err.code}: {detail}", err.code) from err
        except (urllib.error.URLError, OSError) as err:
            raise AirflowApiError(f"{method} {url} failed: {err}; is the API server running?") from err

    def token(self) -> str:
        """A JWT from ``POST /auth/token``, fetched once and reused."""
        if self._token is None:
            if not self.username or self.password is None:
                raise AirflowApiError("no user and password to log in with")
            credentials = {"username": self.username, "password": self.password}
            answer = self._request("POST", "/auth/token", credentials, auth=False)
            self._token = str(answer["access_token"])
        return self._token

    # ---- endpoints ------------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """``/api/v2/monitor/health``: metadatabase, scheduler, triggerer, dag_processor (no login)."""
        return self._request("GET", "/api/v2/monitor/health", auth=False)

    def healthy(self) -> bool:
        try:
            health = self.health()
        except AirflowApiError:
            return False
        return all((part or {}).get("status") == "healthy" for part in health.values())

    def dag(self, dag_id: str) -> dict[str, Any]:
        return self._request("GET", f"/api/v2/dags/{_q(dag_id)}")

    def dag_details(self, dag_id: str) -> dict[str, Any]:
        return self._request("GET", f"/api/v2/dags/{_q(dag_id)}/details")

    def form_defaults(self, dag_id: str) -> dict[str, Any]:
        """The trigger form's initial values: every param's default, as the UI pre-fills them."""
        params = self.dag_details(dag_id).get("params") or {}
        return {name: (spec or {}).get("value") for name, spec in params.items()}

    def trigger(self, dag_id: str, conf: dict[str, Any], note: str | None = None) -> dict[str, Any]:
        """Trigger a run as the UI's form does: the whole form as conf, no logical date."""
        body = {"conf": {**self.form_defaults(dag_id), **conf}, "dag_run_id": None,
                "data_interval_start": None, "data_interval_end": None, "logical_date": None, "note": note}
        return self._request("POST", f"/api/v2/dags/{_q(dag_id)}/dagRuns", body)

    def dag_run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        return self._request("GET", f"/api/v2/dags/{_q(dag_id)}/dagRuns/{_q(run_id)}")

    def task_instances(self, dag_id: str, run_id: str, task_id: str | None = None) -> list[dict[str, Any]]:
        """Every task instance of a run (each map index of a mapped task is one), optionally of one task."""
        found: list[dict[str, Any]] = []
        while True:
            page = self._request("GET", f"/api/v2/dags/{_q(dag_id)}/dagRuns/{_q(run_id)}/taskInstances",
                                 query={"limit": 100, "offset": len(found)})
            found.extend(page["task_instances"])
            if len(found) >= page["total_entries"] or not page["task_instances"]:
                break
        return [ti for ti in found if task_id is None or ti["task_id"] == task_id]

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 300,
                     interval: float = 2.0) -> dict[str, Any]:
        """Poll the run until it succeeds or fails; AirflowApiError when it is still going at ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            run = self.dag_run(dag_id, run_id)
            if run["state"] in FINISHED_RUN_STATES:
                return run
            if time.monotonic() >= deadline:
                raise AirflowApiError(f"run {run_id} of {dag_id} still {run['state']!r} after {timeout:.0f}s")
            time.sleep(interval)


def _q(value: str) -> str:
    return urllib.parse.quote(value, safe="")
