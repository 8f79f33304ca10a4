"""
### recurring_<name>

One scheduled DAG per recurring campaign declared in `include/campaigns.yaml` (the slumber
win-back first), running the same task graph as `push_campaign`. A scheduled run has no one to
approve it: its `max_recipients` is the safety cap, its cool-down keeps weekly runs from nagging
the same members, and its holdout group measures the lift (see the `campaign_lift_report` DAG).

A campaign without a `program_id`, or with `enabled: false`, is registered without a schedule
(manual dry runs only). A bad file fails this DAG file's import with the file and line, and
registers none of its DAGs.
"""

from __future__ import annotations

from airflow.sdk import CronTriggerTimetable

from passpush.campaign_dag import build_campaign_dag, form_params
from passpush.recurring import load_recurring

for _campaign in load_recurring():
    globals()[_campaign.dag_id] = build_campaign_dag(
        _campaign.dag_id,
        doc_md=__doc__,
        params=form_params(**{k: v for k, v in _campaign.conf().items() if v is not None}),
        schedule=CronTriggerTimetable(_campaign.schedule, timezone=_campaign.timezone) if _campaign.live else None,
        tags=["passpush", "campaign", "recurring"] + ([] if _campaign.live else ["not-live"]),
        description=f"Recurring campaign {_campaign.title!r} ({_campaign.schedule} {_campaign.timezone})",
    )
