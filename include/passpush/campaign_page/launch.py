"""Launch a campaign: trigger a ``push_campaign`` run through Airflow, as the signed-in user.

Airflow's own ``trigger_dag`` creates the run (the DAG's params validate the conf, the run is
recorded as triggered from the UI by this user), so the run is indistinguishable from one started
with Airflow's trigger button. The campaign row itself is created by the run's first task.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from airflow.api_fastapi.auth.managers.models.base_user import BaseUser

from passpush.campaign_page import airflow_runs
from passpush.campaign_page.settings import DAG_ID, RUN_ID_PREFIX
from passpush.errors import CampaignConfigError, PassPushError


class LaunchError(PassPushError):
    """Airflow did not create the run."""

    status_code = 409


def new_run_id(now: datetime | None = None) -> str:
    """A run id that says where the run came from; microseconds keep two launches apart."""
    return f"{RUN_ID_PREFIX}__{(now or datetime.now(UTC)).isoformat()}"


def launch(conf: dict[str, Any], user: BaseUser) -> dict[str, Any]:
    """Trigger the run; return its id, state and where to follow it in Airflow."""
    from airflow.api.common.trigger_dag import trigger_dag
    from airflow.exceptions import DagNotFound, DagRunAlreadyExists
    from airflow.utils.types import DagRunTriggeredByType

    run_id = new_run_id()
    try:
        trigger_dag(DAG_ID, run_id=run_id, conf=conf, triggered_by=DagRunTriggeredByType.UI,
                    triggering_user_name=user.get_name(),
                    note=f"Launched from the campaign page by {user.get_name()}")
    except DagNotFound as err:
        raise LaunchError(
            f"Airflow does not know the {DAG_ID} DAG yet (has its file been parsed?): {err}") from err
    except DagRunAlreadyExists as err:
        raise LaunchError(f"a run {run_id!r} already exists: launch again") from err
    except ValueError as err:  # ParamValidationError: the DAG's params refused the conf
        raise CampaignConfigError(f"Airflow refused the campaign's settings: {err}") from err
    return {"dag_id": DAG_ID, "run_id": run_id, "state": "queued", "run_url": airflow_runs.run_url(run_id)}
