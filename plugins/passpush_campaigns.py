"""Registers the campaign page with Airflow: its FastAPI app and the "Push campaigns" entry.

The page is served by the API server under ``/passpush`` and shown inside Airflow's UI as an
external view with a ``url_route``: Airflow renders it in its own frame (same origin, scripts
allowed) under ``/plugin/push-campaigns``, with its navigation around it. Everything else lives
in ``passpush.campaign_page``.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from passpush.campaign_page.app import create_app
from passpush.campaign_page.settings import UI_NAME, UI_ROUTE, URL_PREFIX


def _href(path: str) -> str:
    """A path under Airflow's root, which is not "/" when ``[api] base_url`` has a path."""
    from airflow.api_fastapi.app import API_ROOT_PATH

    return f"{API_ROOT_PATH or '/'}{path.lstrip('/')}"


class PassPushCampaignsPlugin(AirflowPlugin):
    name = "passpush_campaigns"
    fastapi_apps = [{"app": create_app(), "url_prefix": URL_PREFIX, "name": "passpush campaign page"}]
    external_views = [{
        "name": UI_NAME,
        "href": _href(f"{URL_PREFIX}/"),
        "url_route": UI_ROUTE,
        "destination": "nav",
        "icon": _href(f"{URL_PREFIX}/static/icon.svg"),
    }]
