"""The live audience count, computed by the DAG's own dry-run code.

A preview is a dry run of ``push_campaign`` without Airflow: the conf is validated by
``parse_conf``, ``passpush.campaigns.create_campaign`` creates a campaign row (dag_id
``campaign_page_preview``, a fresh run id) and ``passpush.audience.resolve`` resolves it in SQL
and returns its ``AudiencePreview`` (counts by wallet and skip reason, rendered samples), exactly
what the DAG's ``resolve_audience`` task stores on the campaign. The row and its recipients are
then deleted: previews are asked for on every change of the form and are not campaigns.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import psycopg

from passpush import audience, campaigns
from passpush.campaign_page.settings import PREVIEW_DAG_ID
from passpush.campaign_spec import parse_conf

log = logging.getLogger(__name__)


def preview_audience(conf: dict[str, Any], conninfo: str) -> dict[str, Any]:
    """The dry run's preview of this conf."""
    spec = parse_conf(conf)
    with psycopg.connect(conninfo) as conn:
        campaign_id = campaigns.create_campaign(conn, spec, dag_id=PREVIEW_DAG_ID,
                                                dag_run_id=f"preview__{uuid.uuid4().hex}")
        conn.commit()
        try:
            return audience.resolve(conn, campaign_id).as_dict()
        finally:
            conn.rollback()
            discard(conn, campaign_id)


def discard(conn: psycopg.Connection, campaign_id: str) -> None:
    """Delete a preview row; its recipients go with it (ON DELETE CASCADE)."""
    conn.execute("DELETE FROM push_campaigns WHERE id = %s AND dag_id = %s", (campaign_id, PREVIEW_DAG_ID))
    conn.commit()
    log.debug("preview campaign %s discarded", campaign_id)
