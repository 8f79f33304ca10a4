"""How the bench reads an ``airflow dags test`` log and writes the machine line (no timing asserted)."""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # bench/ is a top-level folder, not part of the installed package
    sys.path.insert(0, str(ROOT))

from bench.audience_scale import Timed, _median  # noqa: E402
from bench.dagrun import FIRST_TASK, RUN_FINISHED  # noqa: E402
from bench.report import Figure, markdown  # noqa: E402
from bench.stack import cpu_check  # noqa: E402

LOG = """\
2026-11-25T12:46:36.187186Z [info     ] DAG bundles loaded: dags-folder [airflow.dag_processing.bundles.manager]
2026-11-25T12:46:39.421939Z [info     ] [DAG TEST] starting task_id=create_campaign map_index=-1 [airflow.sdk]
2026-11-25T12:46:51.873394Z [info     ] Task started                   [airflow.api_fastapi] ti_id=1
2026-11-25T12:46:52.282381Z [info     ] Task started                   [airflow.api_fastapi] ti_id=2
2026-11-25T12:47:14.335231Z [info     ] DagRun Finished: dag_id=push_campaign, logical_date=2026-11-25 12:46:36+00:00, \
run_id=manual, run_start_date=2026-11-25 12:46:36.185159+00:00, run_end_date=2026-11-25 12:47:14.333443+00:00, \
run_duration=38.148284, state=success, run_type=manual
"""


def test_first_task_is_the_first_task_started_line() -> None:
    found = FIRST_TASK.search(LOG)
    assert found is not None
    assert datetime.fromisoformat(found.group(1)) == datetime.fromisoformat("2026-11-25T12:46:51.873394+00:00")


def test_run_finished_gives_start_end_and_duration() -> None:
    start, end, duration, state = RUN_FINISHED.findall(LOG)[-1]
    assert (start, end, float(duration), state) == (
        "2026-11-25 12:46:36.185159+00:00", "2026-11-25 12:47:14.333443+00:00", 38.148284, "success")
    # the start-up before the first task is what the bench reports apart
    first = datetime.fromisoformat(FIRST_TASK.search(LOG).group(1))  # type: ignore[union-attr]
    assert round((first - datetime.fromisoformat(start)).total_seconds(), 1) == 15.7


def test_cpu_check_is_a_positive_time_per_step() -> None:
    assert cpu_check(steps=10_000, repeats=1) > 0


def test_machine_line_carries_the_cpu_check() -> None:
    machine = {"cpu": "AMD EPYC", "cores": 2, "memory_gb": 23.5, "os": "Linux", "python": "3.11.7",
               "postgresql": "15", "airflow": "3.3.2", "load_average_at_start": [0.5],
               "cpu_check_ns_at_start": 65.8}
    meta = {"finished": "2026-11-25 13:20 UTC", "mode": "full", "seconds": 1452.0, "runner": "airflow",
            "load_average_at_end": [1.0], "cpu_check_ns_at_end": 69.0}
    figure = Figure("1 delivery", "messages lost", 0, "", 0, "==")
    text = markdown([figure], machine, meta)
    assert "CPU check (ns per step of a fixed Python loop, lower is faster): 65.8 at start, 69.0 at end." in text
    assert "| 1 delivery | messages lost |" in text


def test_repeated_resolutions_report_the_median_round_and_every_time() -> None:
    rounds = [Timed(12.0, 90.0, 1000, 11.5), Timed(9.5, 120.0, 1000, 9.0), Timed(10.25, 95.0, 1000, 10.0)]
    median = _median(rounds)
    assert (median.seconds, median.db_cpu_seconds) == (10.25, 10.0)
    assert median.peak_rss_mb == 120.0  # the highest of all rounds, not the median round's
    assert median.extra["rounds"] == [12.0, 9.5, 10.25]  # in the order they ran


def test_a_single_resolution_is_reported_as_it_ran() -> None:
    once = Timed(3.0, 80.0, 10, extra={"timed_out": True})
    assert _median([once]) == once


def test_bucket_replay_stays_full_below_the_rate_and_empties_on_a_burst() -> None:
    from bench.delivery import bucket_low

    steady = [i / 150 for i in range(300)]  # 150/s into a 200/s bucket of 20
    low, _ = bucket_low(steady, 200.0, 20.0)
    assert low >= 19.0

    burst = [*steady, *([2.0 + 1e-6] * 25)]  # 25 at once after two seconds: 20 pass, 5 are refused
    low, at = bucket_low(burst, 200.0, 20.0)
    assert low < 1.0
    assert at >= 2.0
