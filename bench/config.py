"""Sizes of each mode and the targets of issue 6."""

from __future__ import annotations

from dataclasses import dataclass, field

# The emulator's limit and latency in scenarios 1, 2 and 5 (issue 6).
LIMIT_PER_SECOND = 200.0
LATENCY_MS = (50.0, 150.0)
# passpush runs slightly under the limit: PassKit's bucket and ours do not share a clock.
RATE_FACTOR = 0.98
# Scenario 3: no limit at the emulator, 20 ms latency; passpush at the highest rate a campaign may set.
ENGINE_LATENCY_MS = (20.0, 20.0)
UNTHROTTLED_RATE = 5000.0
# Scenario 2: 3 % transient faults in total.
FAULTS: dict[str, float] = {"fault_503": 0.01, "fault_429": 0.01, "fault_drop": 0.005,
                            "fault_drop_after_apply": 0.005}
MESSAGE = "Double points this weekend only, {points} points waiting!"
DEFAULT_BATCH_SIZE = 1000  # the DAG form's default


@dataclass(frozen=True)
class Targets:
    efficiency: float = 0.97  # sustained request rate / limit, scenario 1
    efficiency_faults: float = 0.93  # scenario 2
    dag_vs_ideal: float = 1.10
    engine_sends_per_second: float = 1500.0
    segment_seconds: float = 10.0
    csv_seconds: float = 15.0
    plan_seconds: float = 5.0
    max_map_length: int = 1024
    task_peak_mb: float = 500.0


@dataclass(frozen=True)
class Sizes:
    name: str
    delivery_recipients: int
    delivery_batch: int
    dag_engine_recipients: int
    engine_growth: tuple[int, ...]
    engine_rmw_size: int
    audience_growth: tuple[int, ...]
    baseline_recipients: int
    runner: str = "airflow"  # "airflow" (airflow dags test) or "inprocess" (the task functions)
    record: bool = False  # rewrite the latest table in bench/RESULTS.md
    dag_batches: tuple[int, ...] = field(default=(5000, DEFAULT_BATCH_SIZE))
    modes: tuple[str, ...] = ("merge", "read_modify_write")  # metadata_update modes to run
    # Each audience resolution runs this many times and reports its median: the same resolution has
    # been seen to take 10 s and 20 s within one afternoon on this machine type (bench/RESULTS.md).
    audience_rounds: int = 1


FULL = Sizes("full", delivery_recipients=20_000, delivery_batch=5000, dag_engine_recipients=20_000,
             engine_growth=(10_000, 100_000, 1_000_000), engine_rmw_size=10_000,
             audience_growth=(10_000, 100_000, 1_000_000), baseline_recipients=1_000, record=True,
             audience_rounds=3)
QUICK = Sizes("quick", delivery_recipients=2_000, delivery_batch=1000, dag_engine_recipients=4_000,
              engine_growth=(2_000, 10_000), engine_rmw_size=2_000, audience_growth=(2_000, 20_000),
              baseline_recipients=300, dag_batches=(2000, DEFAULT_BATCH_SIZE))
SMOKE = Sizes("smoke", delivery_recipients=60, delivery_batch=40, dag_engine_recipients=60,
              engine_growth=(50,), engine_rmw_size=50, audience_growth=(300,), baseline_recipients=30,
              runner="inprocess", dag_batches=(40,), modes=("merge",), audience_rounds=2)
MODES = {s.name: s for s in (FULL, QUICK, SMOKE)}
