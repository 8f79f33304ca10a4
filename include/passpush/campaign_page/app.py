"""The campaign page's FastAPI app, mounted by the Airflow API server under ``/passpush``.

``/`` is the page (signed-out visitors are sent to Airflow's login), ``/static/<file>`` its
script, styles and icon, ``/api/...`` its JSON API. There is no OpenAPI document: every route
needs a signed-in Airflow user, and Airflow's own API is documented elsewhere.
"""

from __future__ import annotations

import logging
from typing import Annotated

import psycopg
from fastapi import Depends, FastAPI, HTTPException, Request, status
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response

from passpush.campaign_page import api
from passpush.campaign_page.auth import CAN_READ, login_url, user_or_none
from passpush.campaign_page.settings import STATIC_DIR
from passpush.db.connection import DatabaseNotConfiguredError
from passpush.errors import PassPushError

log = logging.getLogger(__name__)

# The only files served; a name not listed here is a 404, whatever it contains.
STATIC_FILES = {"app.js": "text/javascript", "app.css": "text/css", "icon.svg": "image/svg+xml"}
NO_STORE = {"Cache-Control": "no-store"}
REVALIDATE = {"Cache-Control": "no-cache"}


def create_app() -> FastAPI:
    app = FastAPI(title="passpush campaign page", openapi_url=None, docs_url=None, redoc_url=None)
    app.include_router(api.router)
    app.add_api_route("/", index, methods=["GET"], include_in_schema=False)
    app.add_api_route("/static/{name}", static_file, methods=["GET"], dependencies=[CAN_READ],
                      include_in_schema=False)
    app.add_exception_handler(PassPushError, _passpush_error)
    app.add_exception_handler(DatabaseNotConfiguredError, _database_unavailable)
    app.add_exception_handler(psycopg.OperationalError, _database_unavailable)
    return app


async def index(request: Request, user: Annotated[object | None, Depends(user_or_none)]) -> Response:
    if user is None:
        return RedirectResponse(login_url(str(request.url)), status_code=status.HTTP_303_SEE_OTHER)
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html", headers=NO_STORE)


async def static_file(name: str) -> Response:
    if name not in STATIC_FILES:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such file")
    return FileResponse(STATIC_DIR / name, media_type=STATIC_FILES[name], headers=REVALIDATE)


async def _passpush_error(request: Request, err: Exception) -> Response:
    code = getattr(err, "status_code", status.HTTP_422_UNPROCESSABLE_CONTENT)
    return JSONResponse({"detail": str(err)}, status_code=code)


async def _database_unavailable(request: Request, err: Exception) -> Response:
    log.error("campaign page: loyalty database unavailable: %s", err)
    return JSONResponse({"detail": f"the loyalty database is unavailable: {err}"},
                        status_code=status.HTTP_503_SERVICE_UNAVAILABLE)
