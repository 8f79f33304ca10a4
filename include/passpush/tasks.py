"""What each task of the ``push_campaign`` DAG does, as plain functions.

DAG files call these and nothing else, so the whole flow can be tested and benchmarked without
Airflow. Connections are resolved here (Airflow connection ``loyalty_db`` for Postgres,
``passkit_default`` for PassKit), inside tasks, never at DAG parse time. Every return value is
small enough for XCom: ids, counts and batch numbers.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import Any

import psycopg

from passpush import audience, campaigns, reconciliation, sending
from passpush.campaign_spec import DEFAULT_RATE_LIMIT, CampaignSpec, parse_conf
from passpush.db import resolve_conninfo
from passpush.errors import CampaignAbortedError, ConfirmationError, PassPushError
from passpush.passkit import PassKitClient, PassKitConfigError, PassKitError, PassKitSettings

log = logging.getLogger(__name__)

PASSKIT_CONN_ID = "passkit_default"
ABORT_REASON_LIMIT = 1000


def passkit_settings(conn_id: str = PASSKIT_CONN_ID) -> tuple[PassKitSettings, float]:
    """The PassKit connection's settings and its configured request rate."""
    from airflow.sdk.exceptions import AirflowNotFoundException

    from passpush.passkit.hook import PassKitHook

    hook = PassKitHook(conn_id)
    try:
        return hook.get_settings(), hook.get_rate_limit_per_second()
    except AirflowNotFoundException as err:
        raise PassKitConfigError(
            f"connection {conn_id!r} is not defined: create it (HTTP type: host = PassKit's REST base URL, "
            "e.g. https://api.pub1.passkit.io, login = API key, password = API secret)") from err


def create_campaign(conf: dict[str, Any], *, dag_id: str, run_id: str, conninfo: str | None = None) -> str:
    """Validate the conf and create (or find, on a retry) the campaign row of this DAG run."""
    spec = parse_conf(conf)
    with psycopg.connect(resolve_conninfo(conninfo)) as conn:
        campaign_id = campaigns.create_campaign(conn, spec, dag_id=dag_id, dag_run_id=run_id)
    log.info("campaign %s %r for program %s: %s", campaign_id, spec.name, spec.program_id,
             spec.describe_audience())
    return campaign_id


def resolve_audience(campaign_id: str, *, conninfo: str | None = None) -> dict[str, Any]:
    """Resolve the audience into the recipient table; a bad audience or message fails the campaign."""
    with psycopg.connect(resolve_conninfo(conninfo)) as conn:
        try:
            preview = audience.resolve(conn, campaign_id)
        except PassPushError as err:
            conn.rollback()
            campaigns.record_failure(conn, campaign_id, err)
            conn.commit()
            raise
    log.info("%s", preview.headline())
    # XCom gets counts only: samples carry members' names and stay in push_campaigns.preview.
    return {k: v for k, v in preview.as_dict().items() if k not in {"samples", "unknown_sample"}}


APPROVAL_TASK = "approve_send"
PLAN_TASK = "confirmed_count"


def check_confirmation(spec: CampaignSpec, preview: dict[str, Any]) -> str | None:
    """How this run is confirmed, or None when a person must approve it in Airflow.

    Raises ConfirmationError when the audience is larger than what was confirmed or allowed.
    """
    eligible = int(preview["eligible"])
    if spec.confirm_recipients is not None and eligible > spec.confirm_recipients:
        raise ConfirmationError(
            f"the audience is {eligible} recipients but only {spec.confirm_recipients} were confirmed: "
            "preview again and confirm the new count")
    if spec.max_recipients is not None and eligible > spec.max_recipients:
        raise ConfirmationError(
            f"the audience is {eligible} recipients, over max_recipients={spec.max_recipients}")
    if spec.confirm_recipients is not None:
        return "confirm_recipients"
    if spec.max_recipients is not None:
        return "max_recipients"
    return None


def confirmation_route(campaign_id: str, *, conninfo: str | None = None) -> str:
    """The gate's branch: straight to planning, or through the approval step first.

    A count over what was confirmed cancels the campaign here, before anything else happens.
    """
    with psycopg.connect(resolve_conninfo(conninfo)) as conn:
        campaign = campaigns.get_campaign(conn, campaign_id)
        if campaign["dry_run"]:
            return PLAN_TASK
        try:
            how = check_confirmation(campaigns.spec_of(campaign), campaign["preview"] or {"eligible": 0})
        except ConfirmationError as err:
            campaigns.set_status(conn, campaign_id, "CANCELLED", abort_reason=str(err))
            conn.commit()
            raise
    return PLAN_TASK if how else APPROVAL_TASK


def approval_subject(preview: dict[str, Any]) -> str:
    iphones, google = preview["will_buzz_iphone"], preview["will_update_google"]
    return (f"This will buzz {iphones} phones ({iphones} iPhones; {google} Google passes update silently). "
            "Are you sure?")


def approval_body(preview: dict[str, Any]) -> str:
    skipped = "\n".join(f"| {reason} | {count} |" for reason, count in sorted(preview["skipped"].items()))
    return (f"**{preview['eligible']}** recipients of {preview['targeted']} targeted, "
            f"in {preview['batches']} batches; {preview.get('held_out', 0)} held out.\n\n"
            f"| skipped because | members |\n|---|---|\n{skipped or '| - | 0 |'}\n\n"
            "Rendered samples are on the campaign's preview (Push campaigns page, push_campaigns.preview).\n\n"
            "Reject (or no answer within the time-out) cancels the campaign.")


def plan_batches(campaign_id: str, *, conninfo: str | None = None,
                 passkit_conn_id: str = PASSKIT_CONN_ID) -> list[int]:
    """Batch numbers to send, after checking the confirmation and PassKit's credentials; [] for a dry run.

    PassKit out of reach (no answer, 429, 5xx) is raised, the campaign untouched, for the task's retry to
    check again (`record_task_failure` fails the campaign once retries are used up); any other refusal
    (401/403, an unknown program) fails the campaign at once: a retry would get the same answer.
    """
    with psycopg.connect(resolve_conninfo(conninfo)) as conn:
        campaign = campaigns.get_campaign(conn, campaign_id)
        if campaign["dry_run"]:
            log.info("dry run: nothing is sent; preview stored on push_campaigns.preview")
            return []
        spec = campaigns.spec_of(campaign)
        preview = campaign["preview"] or {"eligible": 0}
        try:
            confirmed_by = check_confirmation(spec, preview) or "approval"
            settings, _ = passkit_settings(passkit_conn_id)
            asyncio.run(_check_credentials(settings, _passkit_program_id(conn, spec.program_id)))
        except PassKitError as err:
            if err.retryable:
                raise type(err)(f"PassKit at {settings.base_url} was out of reach for the credentials check: {err}",
                                status=err.status, retryable=True, retry_after=err.retry_after) from err
            campaigns.set_status(conn, campaign_id, "FAILED", abort_reason=str(err))
            conn.commit()
            raise
        except PassPushError as err:
            status = "CANCELLED" if isinstance(err, ConfirmationError) else "FAILED"
            campaigns.set_status(conn, campaign_id, status, abort_reason=str(err))
            conn.commit()
            raise
        campaigns.confirm(conn, campaign_id, int(preview["eligible"]), confirmed_by)
        rows = conn.execute(
            "SELECT DISTINCT batch_no FROM push_campaign_recipients WHERE campaign_id = %s"
            " AND batch_no IS NOT NULL AND status IN ('PENDING', 'SENDING', 'RETRYABLE') ORDER BY 1",
            (campaign_id,)).fetchall()
    batches = [int(r[0]) for r in rows]
    log.info("campaign %s: %d batches to send (confirmed by %s)", campaign_id, len(batches), confirmed_by)
    return batches


def record_task_failure(campaign_id: str, task_id: str, error: BaseException | str | None, *,
                        conninfo: str | None = None) -> bool:
    """Fail a campaign that a task before sending left without an outcome; True if this recorded it.

    The DAG's failure callback for those tasks, once Airflow has no retry left. Without it a campaign whose
    resolution or planning crashed (PassKit down, a bug) was closed by reconcile as never approved:
    CANCELLED not_confirmed. A reason the task recorded itself (a refused audience, a confirmation over
    its count) and a campaign already allowed to send are left as they are.
    """
    reason = f"task {task_id} failed: {error or 'see its log'}"[:ABORT_REASON_LIMIT]
    with psycopg.connect(resolve_conninfo(conninfo)) as conn:
        recorded = campaigns.fail_undecided(conn, campaign_id, reason)
    if recorded:
        log.error("campaign %s FAILED: %s", campaign_id, reason)
    return recorded


def _passkit_program_id(conn: psycopg.Connection, program_id: str) -> str:
    return campaigns.load_program(conn, program_id).passkit_program_id


async def _check_credentials(settings: PassKitSettings, program_id: str) -> None:
    async with PassKitClient(settings) as client:
        await client.check_credentials(program_id)


def send_options(spec: CampaignSpec, connection_rate: float | None) -> sending.SendOptions:
    rate = spec.rate_limit_per_second or connection_rate or DEFAULT_RATE_LIMIT
    return sending.SendOptions(rate_limit_per_second=rate, quiet_hours=spec.quiet_window,
                               frequency_cap_seconds=0 if spec.is_test else spec.frequency_cap_hours * 3600)


def send_batch(campaign_id: str, batch_no: int, *, conninfo: str | None = None,
               passkit_conn_id: str = PASSKIT_CONN_ID) -> dict[str, Any]:
    """Send one batch; CampaignAbortedError (401/403) means: do not retry, the campaign is stopped."""
    url = resolve_conninfo(conninfo)
    with psycopg.connect(url) as conn:
        spec = campaigns.spec_of(campaigns.get_campaign(conn, campaign_id))
    settings, rate = passkit_settings(passkit_conn_id)
    summary = sending.send_batch(url, campaign_id, batch_no, settings, send_options(spec, rate))
    return summary.as_dict()


def reconcile(campaign_id: str, *, conninfo: str | None = None,
              passkit_conn_id: str = PASSKIT_CONN_ID) -> dict[str, Any]:
    """One bounded retry pass over what is left, then final states and counts."""
    url = resolve_conninfo(conninfo)
    with psycopg.connect(url) as conn:
        campaign = campaigns.get_campaign(conn, campaign_id)
        left = reconciliation.retryable_left(conn, campaign_id)
    may_send = (not campaign["dry_run"] and not campaign["abort_reason"] and campaign["confirmed_at"]
                and campaign["status"] == "PROCESSING")
    if left and may_send:
        log.info("retry pass over %d recipients left unsent", left)
        settings, rate = passkit_settings(passkit_conn_id)
        options = send_options(campaigns.spec_of(campaign), rate)
        try:
            sending.send_batch(url, campaign_id, None, settings,
                               dataclasses.replace(options, max_attempts=2))
        except CampaignAbortedError as err:
            log.error("%s", err)
    with psycopg.connect(url) as conn:
        return reconciliation.finalize(conn, campaign_id).as_dict()


def report_lift(*, conninfo: str | None = None) -> list[dict[str, Any]]:
    """Lift reports of the campaigns whose window has ended; a short summary per campaign for XCom."""
    from passpush import lift

    with psycopg.connect(resolve_conninfo(conninfo)) as conn:
        due = lift.campaigns_due(conn)
        reports = [lift.compute_lift(conn, campaign_id) for campaign_id in due]
    for report in reports:
        log.info("%s", report.format())
    return [{"campaign_id": r.campaign_id, "return_lift": r.return_lift, "treated": r.treated,
             "held_out": r.held_out} for r in reports]
