"""The plugin as Airflow loads it from the plugins folder, with the environment ``make airflow`` uses."""

from __future__ import annotations

import json
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
    assert plugin["fastapi_apps"] == [{"app": "fastapi.applications.FastAPI", "url_prefix": "/passpush",
                                       "name": "passpush campaign page"}]
    assert plugin["external_views"] == [{"name": "Push campaigns", "href": "/passpush/", "url_route": "push-campaigns",
                                         "destination": "nav", "icon": "/passpush/static/icon.svg"}]
