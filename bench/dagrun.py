"""One campaign through the ``push_campaign`` DAG: ``airflow dags test``, or its task functions in-process.

``airflow dags test`` (what ``make demo`` does) is the default runner: the whole DAG run is then
measured as Airflow records it (the ``DagRun Finished ... run_duration`` line: from the run's start to
its end, mapped ``send_batch`` tasks and all), plus the CLI process's own wall time, CPU and peak RSS.
It runs every task in one process, one at a time, so nothing overlaps: gaps between mapped tasks
show in full, as they would with a pool of one. The in-process runner calls the same
``passpush.tasks`` functions in the same order without Airflow; the smoke test uses it because it
needs seconds, not an Airflow start-up.
"""

from __future__ import annotations

import json
import re
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row

from bench.stack import ChildResult, run_child, step
from passpush import localdev
from passpush.emulator.control import EmulatorProcess

# The first task's "Task started" line: what comes before it is `airflow dags test` starting up (parsing and
# serialising the DAGs, the in-process execution API), which a running scheduler does not pay per run.
FIRST_TASK = re.compile(r"^(\S+) \[info\s*\] Task started ", re.M)
RUN_FINISHED = re.compile(r"DagRun Finished: .*?run_start_date=([^,]+), run_end_date=([^,]+), "
                          r"run_duration=([0-9.]+), state=(\w+)")


@dataclass
class Runner:
    conninfo: str
    log_dir: Path
    kind: str  # "airflow" or "inprocess"
    airflow_home: Path
    prepared_seconds: float | None = None

    def env(self, emulator: EmulatorProcess, rate: float, mode: str) -> dict[str, str]:
        passkit = localdev.passkit_connection_json(
            emulator.url, emulator.api_key, emulator.api_secret, rate_limit_per_second=rate,
            metadata_update=mode)
        return localdev.airflow_env(self.conninfo, passkit, airflow_home=self.airflow_home)

    def prepare(self, emulator: EmulatorProcess) -> None:
        """Airflow's metadata DB and pool, once per bench run (airflow runner only)."""
        if self.kind != "airflow" or self.prepared_seconds is not None:
            return
        started = time.monotonic()
        localdev.prepare_airflow(self.env(emulator, 1.0, "merge"), pool_slots=localdev.DEFAULT_POOL_SLOTS)
        self.prepared_seconds = time.monotonic() - started


@dataclass
class CampaignRun:
    label: str
    returncode: int
    run_seconds: float  # Airflow's DagRun duration (airflow runner) or the task functions' wall time
    process_seconds: float  # wall time of the whole process (Airflow start-up included)
    cpu_seconds: float
    peak_rss_mb: float
    campaign: dict[str, Any]
    log_path: str
    bounds: tuple[float, float] | None = None  # the run's start and end, epoch seconds
    first_task: float | None = None  # when the first task started, epoch seconds (airflow runner)


def latest_campaign(conninfo: str, program_id: str) -> dict[str, Any]:
    with psycopg.connect(conninfo) as conn, conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            "SELECT id::text, status, recipient_count, sent_count, failed_count, skipped_count, cancelled_count,"
            " abort_reason, extract(epoch FROM finished_at - started_at)::float8 AS seconds"
            " FROM push_campaigns WHERE program_id = %s ORDER BY created_at DESC LIMIT 1",
            (program_id,)).fetchone()
    return dict(row) if row else {}


def _airflow(runner: Runner, env: dict[str, str], conf: dict[str, Any], label: str,
             timeout: float) -> tuple[ChildResult, float, tuple[float, float] | None, float | None]:
    """The CLI run; Airflow's own run duration, the run's start and end and its first task's start (epoch)."""
    airflow = str(Path(sys.executable).with_name("airflow"))
    result = run_child([airflow, "dags", "test", "push_campaign", "-c", json.dumps(conf)],
                       runner.log_dir / f"{label}.log", env=env, timeout=timeout)
    log = result.log_path.read_text(errors="replace")
    found = RUN_FINISHED.findall(log)
    first = FIRST_TASK.search(log)
    first_task = datetime.fromisoformat(first.group(1)).timestamp() if first else None
    if not found:
        return result, float("nan"), None, first_task
    start, end, duration, _ = found[-1]
    bounds = (datetime.fromisoformat(start).timestamp(), datetime.fromisoformat(end).timestamp())
    return result, float(duration), bounds, first_task


def run_campaign(runner: Runner, emulator: EmulatorProcess, conf: dict[str, Any], *, rate: float,
                 mode: str, label: str, timeout: float = 1800.0) -> CampaignRun:
    """Run one campaign and read back what the campaign row says."""
    env = runner.env(emulator, rate, mode)
    first_task = None
    if runner.kind == "airflow":
        result, run_seconds, bounds, first_task = _airflow(runner, env, conf, label, timeout)
    else:
        result = step("campaign_inprocess", {"conninfo": runner.conninfo, "conf": conf}, runner.log_dir,
                      label, env=env, timeout=timeout)
        run_seconds, bounds = float(result.result["seconds"]), (result.result["started"], result.result["ended"])
    campaign = latest_campaign(runner.conninfo, conf["program_id"])
    return CampaignRun(label, result.returncode, run_seconds, result.wall_seconds, result.cpu_seconds,
                       result.peak_rss_mb, campaign, str(result.log_path), bounds, first_task)
