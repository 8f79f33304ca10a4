"""Registers the campaign page with Airflow: its FastAPI app and the "Push campaigns" entry.

The page is served by the API server under ``/passpush`` and shown inside Airflow's UI as an
external view with a ``url_route``: Airflow renders it in its own frame (same origin, scripts
allowed) under ``/plugin/push-campaigns``, with its navigation around it. Everything else lives
in ``passpush.campaign_page``; this file stays cheap to import, because every Airflow process
(each task too) imports plugins, and only the API server builds the app, on its first request.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from airflow.configuration import conf
from airflow.plugins_manager import AirflowPlugin

from passpush.campaign_page.deferred import DeferredApp
from passpush.campaign_page.settings import UI_NAME, UI_ROUTE, URL_PREFIX


def _under_airflow_root(path: str) -> str:
    """A path under Airflow's root, which is not "/" when ``[api] base_url`` has a path."""
    root = urlsplit(conf.get("api", "base_url", fallback="") or "").path.rstrip("/")
    return f"{root}/{path.lstrip('/')}"


class PassPushCampaignsPlugin(AirflowPlugin):
    name = "passpush_campaigns"
    fastapi_apps = [{"app": DeferredApp("passpush.campaign_page.app:create_app"), "url_prefix": URL_PREFIX,
                     "name": "passpush campaign page"}]
    external_views = [{
        "name": UI_NAME,
        "href": _under_airflow_root(f"{URL_PREFIX}/"),
        "url_route": UI_ROUTE,
        "destination": "nav",
        "icon": _under_airflow_root(f"{URL_PREFIX}/static/icon.svg"),
    }]
