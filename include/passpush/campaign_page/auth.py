"""Who may use the campaign page, decided by Airflow itself.

Airflow does not protect a plugin's FastAPI app. Every route depends on Airflow's own
``requires_access_dag``, which resolves the current user with the API server's ``get_user``
(a JWT in the ``Authorization`` header, or the UI's ``_token`` cookie) and asks the configured
auth manager:

* reading (programs, segments, history, details) needs read access to ``push_campaign``'s runs;
* anything that writes or reveals member data (preview, upload, launch) needs permission to
  trigger ``push_campaign`` (``POST`` on its runs), the same permission as Airflow's trigger button;
  the history gives readers without it no rendered samples, unknown ids, custom SQL or test recipients.

Unsafe methods also refuse a foreign ``Origin``: the UI cookie is ``SameSite=Lax`` already,
this is defence in depth against cross-site form posts.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlsplit

from airflow.api_fastapi.app import get_auth_manager
from airflow.api_fastapi.auth.managers.models.base_user import BaseUser
from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails
from airflow.api_fastapi.core_api.security import GetUserDep, bearer_scheme, get_user, requires_access_dag
from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials

from passpush.campaign_page.settings import DAG_ID

CAN_READ = Depends(requires_access_dag("GET", DagAccessEntity.RUN, param_dag_id=DAG_ID))
CAN_TRIGGER = Depends(requires_access_dag("POST", DagAccessEntity.RUN, param_dag_id=DAG_ID))
CurrentUser = GetUserDep


def may_trigger(user: BaseUser) -> bool:
    """Whether the user may launch campaigns, so the page can say so before they try."""
    return get_auth_manager().is_authorized_dag(
        method="POST", access_entity=DagAccessEntity.RUN, details=DagDetails(id=DAG_ID), user=user)


def _own_hosts(request: Request) -> set[str]:
    """The names this server answers to: as asked, as a proxy forwarded it, as ``[api] base_url`` says."""
    from airflow.configuration import conf

    hosts = {request.headers.get("host"), request.headers.get("x-forwarded-host"),
             urlsplit(conf.get("api", "base_url", fallback="") or "").netloc}
    return {h for h in hosts if h}


async def same_origin(request: Request) -> None:
    """Refuse a state-changing request sent by a page of another origin."""
    origin = request.headers.get("origin")
    if origin and urlsplit(origin).netloc not in _own_hosts(request):
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"cross-origin request from {origin} refused")


SAME_ORIGIN = Depends(same_origin)


async def user_or_none(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
) -> BaseUser | None:
    """The signed-in user, or None, for the HTML page (which redirects to the login page instead of a 401)."""
    try:
        return await get_user(request, None, bearer)
    except HTTPException:
        return None


def login_url(next_url: str) -> str:
    return get_auth_manager().get_url_login(next_url=next_url)
