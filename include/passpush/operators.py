"""Operators of the campaign graph that TaskFlow cannot express.

``SendBatchOperator`` sends one batch and, when members of the batch are in their quiet hours,
defers until the earliest window ends (a ``DateTimeTrigger`` in the triggerer), so a waiting
batch holds neither a worker slot nor a ``passkit_api`` pool slot; on resuming it sends again,
and defers again while members in later time zones still wait.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow.providers.standard.triggers.temporal import DateTimeTrigger
from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException


class SendBatchOperator(BaseOperator):
    """Send batch ``batch_no`` of campaign ``campaign_id`` (see ``passpush.tasks.send_batch``)."""

    template_fields = ("campaign_id", "batch_no")

    def __init__(self, *, campaign_id: Any, batch_no: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.campaign_id = campaign_id
        self.batch_no = batch_no

    def execute(self, context: Any) -> dict[str, Any]:
        return self._send()

    def resume_after_quiet_hours(self, context: Any, event: Any = None) -> dict[str, Any]:
        return self._send()

    def _send(self) -> dict[str, Any]:
        from passpush import tasks
        from passpush.errors import CampaignAbortedError

        try:
            summary = tasks.send_batch(str(self.campaign_id), int(self.batch_no))
        except CampaignAbortedError as err:
            raise AirflowFailException(str(err)) from err
        if summary["waiting"] and summary["next_opening"]:
            self.log.info("%d members wait for their quiet hours to end; resuming at %s",
                          summary["waiting"], summary["next_opening"])
            self.defer(trigger=DateTimeTrigger(moment=datetime.fromisoformat(summary["next_opening"])),
                       method_name="resume_after_quiet_hours")
        return summary
