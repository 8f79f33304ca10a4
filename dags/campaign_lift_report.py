"""
### campaign_lift_report

Daily: for every campaign with a holdout group whose measurement window (7 days) has ended,
compare treated and held-out members (share who came back, points earned, with 95 % confidence
intervals) and store the report in `push_campaign_lift`, where the campaign page and
`passpush lift <campaign_id>` read it. For the marketing team, to see whether campaigns pay.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import dag, task


@dag(schedule="@daily", catchup=False, tags=["passpush", "lift"], doc_md=__doc__)
def campaign_lift_report() -> None:
    @task
    def report_due_campaigns() -> list[dict[str, Any]]:
        from passpush import tasks

        return tasks.report_lift()

    report_due_campaigns()


campaign_lift_report()
