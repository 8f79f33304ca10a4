"""The page's preview against a real dry run of ``push_campaign`` (``dag.test()``) for the same conf."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg.rows import dict_row

from passpush.seed import SeededProgram

pytestmark = [pytest.mark.e2e, pytest.mark.airflow, pytest.mark.postgres, pytest.mark.emulator]


def test_the_preview_is_what_a_dry_run_of_the_dag_stores(
        run_dag: Callable[[dict[str, Any]], Any], marketing: TestClient, program: SeededProgram,
        db: psycopg.Connection) -> None:
    conf = {"program_id": program.program_id, "name": "Dry run check", "audience": "segment", "segment": "whale",
            "segment_params": {"min_points": 150}, "message": "{first_name|Hi there}, {points} points for you"}

    preview = marketing.post("/passpush/api/preview", json=conf).json()
    dag_run = run_dag({**conf, "dry_run": True})

    assert str(dag_run.state) == "success"
    with db.cursor(row_factory=dict_row) as cur:
        campaign = cur.execute("SELECT status, preview FROM push_campaigns WHERE dag_id = 'push_campaign'"
                               " AND dag_run_id = %s", (dag_run.run_id,)).fetchone()
    assert campaign["status"] == "DRY_RUN"
    assert campaign["preview"] == preview
    assert preview["eligible"] > 0
