"""The ``push_campaign`` DAG runs behind the campaigns, read from Airflow's metadata DB.

A launched campaign has no ``push_campaigns`` row until its run's first task creates it; until
then the history shows the queued run itself. Links go to the run's page in Airflow's UI.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from airflow.models.dag import DagModel
from airflow.models.dagrun import DagRun
from sqlalchemy import select
from sqlalchemy.orm import Session

from passpush.campaign_page.settings import DAG_ID

ACTIVE_STATES = ("queued", "running")


def base_path() -> str:
    """Airflow's UI root, "/" unless ``[api] base_url`` has a path."""
    from airflow.api_fastapi.app import API_ROOT_PATH

    return API_ROOT_PATH or "/"


def run_url(run_id: str, dag_id: str = DAG_ID) -> str:
    return f"{base_path()}dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}"


def run_states(session: Session, run_ids: list[str]) -> dict[str, str]:
    if not run_ids:
        return {}
    rows = session.execute(
        select(DagRun.run_id, DagRun.state).where(DagRun.dag_id == DAG_ID, DagRun.run_id.in_(run_ids)))
    return {run_id: str(state) for run_id, state in rows}


def active_runs(session: Session, limit: int = 50) -> list[dict[str, Any]]:
    """Queued and running runs, newest first, with their conf."""
    rows = session.execute(
        select(DagRun.run_id, DagRun.state, DagRun.conf, DagRun.run_after, DagRun.triggering_user_name)
        .where(DagRun.dag_id == DAG_ID, DagRun.state.in_(ACTIVE_STATES))
        .order_by(DagRun.run_after.desc()).limit(limit))
    return [{"run_id": r.run_id, "state": str(r.state), "conf": r.conf or {}, "created_at": r.run_after,
             "triggered_by": r.triggering_user_name} for r in rows]


def dag_status(session: Session) -> dict[str, Any]:
    """Whether Airflow knows the DAG and whether it is paused (a paused DAG's runs wait)."""
    query = select(DagModel.is_paused, DagModel.is_stale).where(DagModel.dag_id == DAG_ID)
    row = session.execute(query).first()
    if row is None:
        return {"known": False, "paused": False}
    return {"known": not row.is_stale, "paused": bool(row.is_paused)}
