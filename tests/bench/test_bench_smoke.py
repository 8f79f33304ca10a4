"""``make bench``'s machinery at tiny sizes: every scenario runs and the table is written.

No timing is asserted here (timing lives in bench/ only): the run uses ``--smoke``, which sends a few
dozen messages through the DAG's task functions in-process instead of ``airflow dags test``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

pytestmark = [pytest.mark.postgres, pytest.mark.emulator]

ROOT = Path(__file__).resolve().parents[2]


def _server() -> list[str]:
    url = os.environ.get("PASSPUSH_TEST_DATABASE_URL")
    if not url:
        return []
    params = conninfo_to_dict(url)
    params["dbname"] = "postgres"
    return ["--server", make_conninfo(**params)]


def test_quick_mode_machinery_runs_every_scenario(tmp_path: Path) -> None:
    database = f"passpush_bench_smoke_{uuid.uuid4().hex[:8]}"
    command = [sys.executable, "-m", "bench.run", "--smoke", "--out", str(tmp_path), "--database", database,
               *_server()]

    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)

    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    scenarios = {f["scenario"] for f in results["figures"]}
    assert scenarios == {"1 delivery", "2 faults", "3 engine", "4 audience", "5 baseline", "6 growth"}
    by_name = {f["name"]: f for f in results["figures"]}
    assert by_name["messages lost, merge, batch 40"]["measured"] == 0
    assert by_name["members buzzed twice, merge, batch 40"]["measured"] == 0
    assert all("measured" in f and "target" in f and "ratio" in f for f in results["figures"])
    # each resolution ran twice and reports its median round
    assert "median of 2 rounds" in by_name["segment all_active resolved, 300 passes"]["note"]
    assert "scenario" in done.stdout and "figure" in done.stdout  # the table was printed
