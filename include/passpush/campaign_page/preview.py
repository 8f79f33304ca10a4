"""The live audience count, computed by the DAG's own dry-run code.

A preview is a dry run of ``push_campaign`` without Airflow: ``passpush.tasks.create_campaign``
creates a campaign row (dag_id ``campaign_page_preview``, a fresh run id) and
``passpush.tasks.resolve_audience`` resolves it in SQL and returns its ``AudiencePreview``, exactly
as the DAG's first two tasks do. The row and its recipients are then deleted: previews are asked
for on every change of the form and are not campaigns, so they never reach the history.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import psycopg

from passpush import tasks
from passpush.campaign_page.settings import PREVIEW_DAG_ID

log = logging.getLogger(__name__)


def preview_audience(conf: dict[str, Any], conninfo: str) -> dict[str, Any]:
    """The dry run's preview of this conf: counts by wallet and skip reason, rendered samples."""
    campaign_id = tasks.create_campaign(conf, dag_id=PREVIEW_DAG_ID, run_id=f"preview__{uuid.uuid4().hex}",
                                        conninfo=conninfo)
    try:
        return tasks.resolve_audience(campaign_id, conninfo=conninfo)
    finally:
        discard(campaign_id, conninfo)


def discard(campaign_id: str, conninfo: str) -> None:
    """Delete a preview row; its recipients go with it (ON DELETE CASCADE)."""
    with psycopg.connect(conninfo) as conn:
        conn.execute("DELETE FROM push_campaigns WHERE id = %s AND dag_id = %s",
                     (campaign_id, PREVIEW_DAG_ID))
    log.debug("preview campaign %s discarded", campaign_id)
