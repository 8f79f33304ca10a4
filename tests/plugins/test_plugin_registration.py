"""The plugin as Airflow loads it from the plugins folder, with the environment ``make airflow`` uses."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from passpush import localdev

pytestmark = [pytest.mark.airflow]


def test_the_local_stack_environment_loads_the_campaign_page_plugin(tmp_path: Path) -> None:
    # The same environment passpush.cli's `airflow` command (make airflow) gives `airflow standalone`.
    env = localdev.airflow_env("postgresql://postgres@127.0.0.1:5432/unused", None, airflow_home=tmp_path)

    result = localdev.airflow_command(["plugins", "--output", "json"], env, capture=True, timeout=180)

    plugins = {p["name"]: p for p in json.loads(result.stdout)}
    assert "passpush_campaigns" in plugins, result.stderr[-2000:]
    plugin = plugins["passpush_campaigns"]
    assert plugin["fastapi_apps"] == [{"app": "passpush.campaign_page.deferred.DeferredApp", "url_prefix": "/passpush",
                                       "name": "passpush campaign page"}]
    assert plugin["external_views"] == [{"name": "Push campaigns", "href": "/passpush/", "url_route": "push-campaigns",
                                         "destination": "nav", "icon": "/passpush/static/icon.svg"}]


def test_importing_the_plugin_is_cheap_for_processes_that_do_not_serve_it() -> None:
    # Every Airflow process imports plugins (each task too); only the API server builds the page.
    plugins = Path(__file__).resolve().parents[2] / "plugins"
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import passpush_campaigns; "
            "heavy = [m for m in ('fastapi.routing', 'psycopg', 'airflow.api_fastapi.core_api.security',"
            " 'passpush.campaign_page.app') if m in sys.modules]; print(heavy)")

    result = subprocess.run([sys.executable, "-c", code, str(plugins)], capture_output=True, text=True, check=True)

    assert result.stdout.strip().splitlines()[-1] == "[]"
