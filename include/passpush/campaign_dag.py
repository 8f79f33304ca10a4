"""The campaign task graph, shared by ``push_campaign`` and every recurring campaign DAG.

Only Airflow wiring lives here: each task calls one function of ``passpush.tasks``, imported inside
the task, so parsing a DAG file imports nothing heavy and touches no connection or database.

    create_campaign -> resolve_audience -> confirmation_gate -> (confirmed_count | approve_send)
        -> plan_batches -> send_batch (mapped, pool passkit_api; defers through quiet hours)
        -> reconcile (always runs)

A task before sending that fails for good (its retries used up, or a bug) fails the campaign with its error,
where the task did not record a reason itself: reconcile would otherwise read the campaign as never approved.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk import DAG, Context, Param, get_current_context, task

from passpush.operators import SendBatchOperator

POOL = "passkit_api"
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
DEFAULTS: dict[str, Any] = {
    "program_id": "",
    "audience": "all_active",
    "segment": "slumber",
    "segment_params": {},
    "sql": None,
    "csv_path": None,
    "test_recipients": [],
    "name": "Weekend double points",
    "message": "Double points this weekend only, {points} points waiting!",
    "dry_run": True,
    "confirm_recipients": None,
    "max_recipients": None,
    "holdout_percent": 0,
    "rate_limit_per_second": None,
    "batch_size": 1000,
    "recurring_key": None,
    "cooldown_days": 30,
    "quiet_hours": False,
    "quiet_hours_start": "21:00",
    "quiet_hours_end": "09:00",
    "quiet_hours_policy": "wait",
}


def form_params(**overrides: Any) -> dict[str, Param]:
    """The trigger form (sections Audience, Message, Safety, Delivery); ``overrides`` change defaults."""
    v = {**DEFAULTS, "program_id": os.environ.get("PASSPUSH_DEFAULT_PROGRAM_ID", ""), **overrides}
    return {
        "program_id": Param(v["program_id"], type="string", title="Program",
                            description="UUID of the program in the programs table.", section="Audience"),
        "audience": Param(v["audience"], type="string", enum=list(AUDIENCE_LABELS), values_display=AUDIENCE_LABELS,
                          title="Audience", description="Who receives the buzz.", section="Audience"),
        "segment": Param(v["segment"], type=["null", "string"], enum=[None, *SEGMENT_LABELS],
                         values_display=SEGMENT_LABELS, title="Segment",
                         description="Used when the audience is a built-in segment.", section="Audience"),
        "segment_params": Param(v["segment_params"], type="object", title="Segment parameters",
                                description='e.g. {"days": 45}, {"min_points": 1000} or {"zips": ["90210"]}.',
                                section="Audience"),
        "sql": Param(v["sql"], type=["null", "string"], format="multiline", title="Custom SQL",
                     description="One read-only SELECT returning a member_id column.", section="Audience"),
        "csv_path": Param(v["csv_path"], type=["null", "string"], title="CSV path or URI",
                          description="A file in the upload folder, or an s3:// / gs:// URI, with a member_id column.",
                          section="Audience"),
        "test_recipients": Param(v["test_recipients"], type="array", items={"type": "string"},
                                 title="Test send to", section="Audience",
                                 description="Member ids (e.g. the team's own passes): send only to them, "
                                             "recorded as a test; the real audience is not touched."),
        "name": Param(v["name"], type="string", minLength=1, title="Campaign name", section="Message"),
        "message": Param(v["message"], type="string", minLength=1, format="multiline", title="Message",
                         description="Lock-screen text. Placeholders: {points}, {first_name}, {tier}, "
                                     "{first_name|there}.", section="Message"),
        "dry_run": Param(v["dry_run"], type="boolean", title="Dry run",
                         description="Resolve and preview only; nothing is sent.", section="Safety"),
        "confirm_recipients": Param(v["confirm_recipients"], type=["null", "integer"], minimum=0,
                                    title="Confirmed recipients", section="Safety",
                                    description="The count you confirmed; the run stops if the audience is "
                                                "larger. Empty: approve in Required Actions."),
        "max_recipients": Param(v["max_recipients"], type=["null", "integer"], minimum=0, title="Max recipients",
                                description="Safety cap for scheduled campaigns.", section="Safety"),
        "holdout_percent": Param(v["holdout_percent"], type="number", minimum=0, maximum=50,
                                 title="Holdout %", section="Safety",
                                 description="Share of the eligible audience held out to measure the lift."),
        "rate_limit_per_second": Param(v["rate_limit_per_second"], type=["null", "number"], exclusiveMinimum=0,
                                       maximum=5000, title="Requests per second", section="Delivery",
                                       description="Global PassKit request rate; empty: the passkit_default "
                                                   "connection's setting."),
        "batch_size": Param(v["batch_size"], type="integer", minimum=1, maximum=100000, title="Batch size",
                            description="Members per mapped send_batch task, in member order; it sends to those "
                                        "of them not skipped.", section="Delivery"),
        "recurring_key": Param(v["recurring_key"], type=["null", "string"], title="Recurring campaign",
                               description="Set by recurring campaigns: members reached by the same one "
                                           "within the cool-down are skipped.", section="Delivery"),
        "cooldown_days": Param(v["cooldown_days"], type="number", minimum=0, maximum=365, title="Cool-down (days)",
                               section="Delivery"),
        "quiet_hours": Param(v["quiet_hours"], type="boolean", title="Quiet hours", section="Delivery",
                             description="Nobody is buzzed at night in their own time zone."),
        "quiet_hours_start": Param(v["quiet_hours_start"], type="string", pattern=r"^\d{2}:\d{2}(:\d{2})?$",
                                   title="Quiet from (local time)", section="Delivery"),
        "quiet_hours_end": Param(v["quiet_hours_end"], type="string", pattern=r"^\d{2}:\d{2}(:\d{2})?$",
                                 title="Quiet until (local time)", section="Delivery"),
        "quiet_hours_policy": Param(v["quiet_hours_policy"], type="string", enum=["wait", "skip"],
                                    values_display={"wait": "Wait and send when their morning comes",
                                                    "skip": "Skip them (reason quiet_hours)"},
                                    title="Members in quiet hours", section="Delivery"),
    }


def _approval_subject(preview: dict[str, Any]) -> str:
    from passpush.tasks import approval_subject

    return approval_subject(preview)


def _approval_body(preview: dict[str, Any]) -> str:
    from passpush.tasks import approval_body

    return approval_body(preview)


def build_campaign_dag(dag_id: str, *, doc_md: str, params: dict[str, Param], schedule: Any = None,
                       tags: list[str] | None = None, description: str | None = None) -> DAG:
    """A DAG running one campaign per run with the shared task graph."""
    with DAG(
        dag_id=dag_id,
        schedule=schedule,
        catchup=False,
        tags=tags or ["passpush", "campaign"],
        params=params,
        doc_md=doc_md,
        description=description,
        max_active_runs=10,
        user_defined_filters={"approval_subject": _approval_subject, "approval_body": _approval_body},
        default_args={"retries": 2, "retry_delay": timedelta(seconds=10)},
    ) as dag:
        _campaign_graph()
    return dag


def _fail_undecided_campaign(context: Context) -> None:
    """A task before sending failed for good: say so on the campaign (reconcile read it as never approved)."""
    from passpush import tasks

    ti = context["ti"]
    campaign_id = ti.xcom_pull(task_ids="create_campaign")
    if campaign_id:
        tasks.record_task_failure(campaign_id, ti.task_id, context.get("exception"))


def _campaign_graph() -> None:
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

    @task(on_failure_callback=_fail_undecided_campaign)
    def resolve_audience(campaign_id: str) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowFailException

        from passpush import tasks
        from passpush.errors import PassPushError

        try:
            return tasks.resolve_audience(campaign_id)
        except PassPushError as err:
            raise AirflowFailException(str(err)) from err

    @task.branch(on_failure_callback=_fail_undecided_campaign)
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

    @task(trigger_rule="none_failed_min_one_success", on_failure_callback=_fail_undecided_campaign)
    def plan_batches(campaign_id: str, preview: dict[str, Any]) -> list[int]:
        from airflow.sdk.exceptions import AirflowFailException

        from passpush import tasks
        from passpush.errors import PassPushError
        from passpush.passkit import PassKitError

        try:
            return tasks.plan_batches(campaign_id)
        except (PassPushError, PassKitError) as err:
            if isinstance(err, PassKitError) and err.retryable:
                raise  # PassKit out of reach for now: the task's retry checks again
            raise AirflowFailException(str(err)) from err

    @task(trigger_rule="all_done")
    def reconcile(campaign_id: str | None) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowFailException

        from passpush import tasks

        if not campaign_id:  # create_campaign failed: nothing to close, and retrying will not change that
            raise AirflowFailException("no campaign was created: see the create_campaign task's log")
        result = tasks.reconcile(campaign_id)
        if result["status"] == "FAILED":  # the run's state should say what the campaign's does
            raise AirflowFailException(f"campaign {campaign_id} FAILED: {result}")
        return result

    campaign_id = create_campaign()
    preview = resolve_audience(campaign_id)
    gate = confirmation_gate(campaign_id, preview)
    batches = plan_batches(campaign_id, preview)
    gate >> [approve_send, confirmed_count] >> batches
    sent = SendBatchOperator.partial(
        task_id="send_batch", campaign_id=campaign_id, pool=POOL, retries=3, retry_delay=timedelta(seconds=5),
        map_index_template="batch {{ task.batch_no }}",
    ).expand(batch_no=batches)
    sent >> reconcile(campaign_id)
