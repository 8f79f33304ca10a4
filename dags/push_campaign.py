"""
### push_campaign

Send one buzz campaign to loyalty passes in Apple Wallet and Google Wallet through PassKit.

For marketing admins (through the trigger form or the campaign page) and for scheduled
win-back campaigns. One DAG run is one campaign, recorded in `push_campaigns` with a row per
recipient in `push_campaign_recipients`:

1. `create_campaign` validates the form and creates the campaign row;
2. `resolve_audience` resolves who, renders every message and applies suppression, in SQL;
3. `confirmation_gate`: no run buzzes phones without a confirmed count. With `confirm_recipients`
   (the campaign page) or `max_recipients` (schedules) the run goes on only if the audience is not
   larger; otherwise `approve_send` asks a person in Airflow's Required Actions ("This will buzz X
   phones..."); Reject, or no answer within 24 h, cancels the campaign;
   `plan_batches` then checks PassKit's credentials and lists the batches;
4. `send_batch` (mapped, pool `passkit_api`) sends a batch under a global request-rate limit;
5. `reconcile` (always runs) retries what is left once and writes the final counts and status.

A dry run stops after step 3 and leaves a preview on the campaign. Connections: `loyalty_db`
(Postgres) and `passkit_default` (PassKit: host = base URL, login = API key, password = secret).
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk import Param, dag, get_current_context, task

AUDIENCE_LABELS = {
    "all_active": "All active members",
    "segment": "A built-in segment",
    "sql": "Custom SQL segment (read-only)",
    "csv": "Uploaded CSV of member ids",
}
SEGMENT_LABELS = {
    "slumber": "Slumber: no activity for N days (segment_params.days, default 30)",
    "whale": "Whale: more than N points (segment_params.min_points, default 500)",
    "local": "Local: lives in given ZIP codes (segment_params.zips, e.g. [\"90210\"])",
}


def _params() -> dict[str, Param]:
    return {
        "program_id": Param(
            os.environ.get("PASSPUSH_DEFAULT_PROGRAM_ID", ""), type="string", title="Program",
            description="UUID of the program in the programs table.", section="Audience"),
        "audience": Param(
            "all_active", type="string", enum=list(AUDIENCE_LABELS), values_display=AUDIENCE_LABELS,
            title="Audience", description="Who receives the buzz.", section="Audience"),
        "segment": Param(
            "slumber", type=["null", "string"], enum=[None, *SEGMENT_LABELS], values_display=SEGMENT_LABELS,
            title="Segment", description="Used when the audience is a built-in segment.", section="Audience"),
        "segment_params": Param(
            {}, type="object", title="Segment parameters",
            description='e.g. {"days": 45}, {"min_points": 1000} or {"zips": ["90210"]}.', section="Audience"),
        "sql": Param(
            None, type=["null", "string"], format="multiline", title="Custom SQL",
            description="One read-only SELECT returning a member_id column.", section="Audience"),
        "csv_path": Param(
            None, type=["null", "string"], title="CSV path or URI",
            description="A file in the upload folder, or s3:// / gs:// URI, with a member_id column.",
            section="Audience"),
        "name": Param(
            "Weekend double points", type="string", minLength=1, title="Campaign name", section="Message"),
        "message": Param(
            "Double points this weekend only, {points} points waiting!", type="string", minLength=1,
            format="multiline", title="Message",
            description="Lock-screen text. Placeholders: {points}, {first_name}, {tier}, {first_name|there}.",
            section="Message"),
        "dry_run": Param(
            True, type="boolean", title="Dry run",
            description="Resolve and preview only; nothing is sent.", section="Safety"),
        "confirm_recipients": Param(
            None, type=["null", "integer"], minimum=0, title="Confirmed recipients",
            description="The count you confirmed; the run stops if the audience is larger.", section="Safety"),
        "max_recipients": Param(
            None, type=["null", "integer"], minimum=0, title="Max recipients",
            description="Safety cap for scheduled campaigns.", section="Safety"),
        "rate_limit_per_second": Param(
            None, type=["null", "number"], exclusiveMinimum=0, maximum=5000, title="Requests per second",
            description="Global PassKit request rate; empty: the passkit_default connection's setting.",
            section="Delivery"),
        "batch_size": Param(
            1000, type="integer", minimum=1, maximum=100000, title="Batch size",
            description="Recipients per mapped send_batch task.", section="Delivery"),
    }


def _approval_subject(preview: dict[str, Any]) -> str:
    from passpush.tasks import approval_subject

    return approval_subject(preview)


def _approval_body(preview: dict[str, Any]) -> str:
    from passpush.tasks import approval_body

    return approval_body(preview)


@dag(
    dag_id="push_campaign",
    schedule=None,
    catchup=False,
    tags=["passpush", "campaign"],
    params=_params(),
    doc_md=__doc__,
    max_active_runs=10,
    user_defined_filters={"approval_subject": _approval_subject, "approval_body": _approval_body},
    default_args={"retries": 2, "retry_delay": timedelta(seconds=10)},
)
def push_campaign() -> None:
    @task
    def create_campaign() -> str:
        from airflow.sdk.exceptions import AirflowFailException

        from passpush import tasks
        from passpush.errors import PassPushError

        context = get_current_context()
        try:
            return tasks.create_campaign(dict(context["params"]), dag_id=context["dag"].dag_id,
                                         run_id=context["run_id"])
        except PassPushError as err:
            raise AirflowFailException(str(err)) from err

    @task
    def resolve_audience(campaign_id: str) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowFailException

        from passpush import tasks
        from passpush.errors import PassPushError

        try:
            return tasks.resolve_audience(campaign_id)
        except PassPushError as err:
            raise AirflowFailException(str(err)) from err

    @task.branch
    def confirmation_gate(campaign_id: str, preview: dict[str, Any]) -> str:
        from airflow.sdk.exceptions import AirflowFailException

        from passpush import tasks
        from passpush.errors import PassPushError

        try:
            return tasks.confirmation_route(campaign_id)
        except PassPushError as err:
            raise AirflowFailException(str(err)) from err

    approve_send = ApprovalOperator(
        task_id="approve_send",
        subject="{{ ti.xcom_pull(task_ids='resolve_audience') | approval_subject }}",
        body="{{ ti.xcom_pull(task_ids='resolve_audience') | approval_body }}",
        defaults=["Reject"],  # no answer within the time-out cancels the campaign
        response_timeout=timedelta(hours=24),
    )

    # The branch taken when the conf carries the confirmed count (or a schedule's safety cap).
    confirmed_count = EmptyOperator(task_id="confirmed_count")

    @task(trigger_rule="none_failed_min_one_success")
    def plan_batches(campaign_id: str, preview: dict[str, Any]) -> list[int]:
        from airflow.sdk.exceptions import AirflowFailException

        from passpush import tasks
        from passpush.errors import PassPushError
        from passpush.passkit import PassKitAuthError

        try:
            return tasks.plan_batches(campaign_id)
        except (PassPushError, PassKitAuthError) as err:
            raise AirflowFailException(str(err)) from err

    @task(pool="passkit_api", retries=3, retry_delay=timedelta(seconds=5), map_index_template="batch {{ batch_no }}")
    def send_batch(campaign_id: str, batch_no: int) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowFailException

        from passpush import tasks
        from passpush.errors import CampaignAbortedError

        try:
            return tasks.send_batch(campaign_id, batch_no)
        except CampaignAbortedError as err:
            raise AirflowFailException(str(err)) from err

    @task(trigger_rule="all_done")
    def reconcile(campaign_id: str) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowFailException

        from passpush import tasks

        result = tasks.reconcile(campaign_id)
        if result["status"] == "FAILED":  # the run's state should say what the campaign's does
            raise AirflowFailException(f"campaign {campaign_id} FAILED: {result}")
        return result

    campaign_id = create_campaign()
    preview = resolve_audience(campaign_id)
    gate = confirmation_gate(campaign_id, preview)
    batches = plan_batches(campaign_id, preview)
    gate >> [approve_send, confirmed_count] >> batches
    sent = send_batch.partial(campaign_id=campaign_id).expand(batch_no=batches)
    sent >> reconcile(campaign_id)


push_campaign()
