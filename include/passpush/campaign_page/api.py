"""The page's JSON API, under ``/passpush/api``. Routes are thin: each calls one function.

Reading needs read access to ``push_campaign``'s runs; preview, upload and launch need permission
to trigger it (see ``auth``), and so does the member data in the history (rendered samples, unknown
ids, custom SQL, test recipients): readers get the history without it. Sync routes run in FastAPI's
thread pool: psycopg and Airflow's ORM block.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from airflow.api_fastapi.common.db.common import SessionDep
from fastapi import APIRouter, Depends, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from passpush.campaign_page import airflow_runs, history, launch, uploads
from passpush.campaign_page.auth import CAN_READ, CAN_TRIGGER, SAME_ORIGIN, CurrentUser, may_trigger
from passpush.campaign_page.forms import CampaignForm, LaunchForm
from passpush.campaign_page.preview import preview_audience
from passpush.campaign_page.settings import DAG_ID, max_upload_bytes
from passpush.campaign_spec import SEGMENTS
from passpush.campaigns import load_program
from passpush.db import resolve_conninfo
from passpush.db.connection import connect
from passpush.rendering import DEFAULT_MAX_LENGTH
from passpush.segments import load_segments


def loyalty_conninfo() -> str:
    """The loyalty database: Airflow connection ``loyalty_db``, else ``PASSPUSH_DATABASE_URL``."""
    return resolve_conninfo()


LoyaltyDb = Annotated[str, Depends(loyalty_conninfo)]
router = APIRouter(prefix="/api", dependencies=[CAN_READ])


@router.get("/session")
def session_info(user: CurrentUser, session: SessionDep) -> dict[str, Any]:
    return {"user": user.get_name(), "can_launch": may_trigger(user), "dag_id": DAG_ID,
            "dag": airflow_runs.dag_status(session), "airflow_base": airflow_runs.base_path(),
            "max_upload_bytes": max_upload_bytes(), "max_message_length": DEFAULT_MAX_LENGTH}


@router.get("/programs")
def programs(db: LoyaltyDb) -> list[dict[str, Any]]:
    with connect(db, autocommit=True) as conn:
        return history.list_programs(conn)


@router.get("/segments")
def segments() -> list[dict[str, Any]]:
    """The built-in segments a campaign may target, with their parameters and defaults."""
    return [{"name": s.name, "description": s.description,
             "params": [{"name": p.name, "type": p.type, "default": p.default, "description": p.description}
                        for p in s.params]}
            for key, s in load_segments().items() if key in SEGMENTS]


@router.post("/preview", dependencies=[CAN_TRIGGER, SAME_ORIGIN])
def preview(form: CampaignForm, db: LoyaltyDb) -> dict[str, Any]:
    return preview_audience(form.preview_conf(), db)


@router.post("/uploads", status_code=201, dependencies=[CAN_TRIGGER, SAME_ORIGIN])
async def upload(request: Request) -> dict[str, Any]:
    """A member-id CSV (form field ``file``); the body is read only after the checks above passed."""
    uploads.check_declared_size(request.headers.get("content-length"))
    async with request.form(max_files=1, max_fields=1) as form:
        file = form.get("file")
        if not isinstance(file, UploadFile):
            raise uploads.UploadRefusedError("send the CSV as the form field 'file'")
        filename = file.filename or "upload.csv"
        uploads.check_type(filename, file.content_type)
        data = await file.read(max_upload_bytes() + 1)
    stored = await run_in_threadpool(uploads.store, data, filename)
    return stored.as_dict()


@router.post("/launch", status_code=201, dependencies=[CAN_TRIGGER, SAME_ORIGIN])
def launch_campaign(form: LaunchForm, user: CurrentUser, db: LoyaltyDb) -> dict[str, Any]:
    conf = form.launch_conf()
    with connect(db, autocommit=True) as conn:
        load_program(conn, conf["program_id"])  # a run for an unknown program would only fail later
    return launch.launch(conf, user)


@router.get("/campaigns")
def campaigns(db: LoyaltyDb, session: SessionDep, user: CurrentUser,
              limit: Annotated[int, Query(ge=1, le=200)] = 50,
              offset: Annotated[int, Query(ge=0)] = 0,
              program_id: uuid.UUID | None = None) -> dict[str, Any]:
    with connect(db, autocommit=True) as conn:
        return history.list_campaigns(conn, session, limit=limit, offset=offset,
                                      program_id=str(program_id) if program_id else None,
                                      members=may_trigger(user))


@router.get("/campaigns/{campaign_id}")
def campaign(campaign_id: uuid.UUID, db: LoyaltyDb, session: SessionDep, user: CurrentUser) -> dict[str, Any]:
    """Member data (rendered samples, unknown ids, custom SQL) only for users who may trigger the DAG."""
    with connect(db, autocommit=True) as conn:
        return history.campaign_detail(conn, session, campaign_id, members=may_trigger(user))
