"""Scenario 4 (audience at scale) and its growth (scenario 6), one program per size.

Each program is seeded with the project's generator (realistic shares of inactive, opted-out and
unenrolled passes) and given a history: an earlier campaign that reached every member three days ago,
so suppression (frequency cap, Google's daily limit, "already shows this text") reads real rows.
Each timed step starts on a vacuumed recipient table (see ``_settle``).
Every step runs in a child process (one per task, as Airflow runs them) and reports its own time;
the parent adds the process's peak RSS. Segments are resolved with ``audience.resolve`` on a
connection of the step's own, which is what the ``resolve_audience`` task does, so that the database
server's CPU time for the work can be read as well.

``insert floor`` writes the same number of recipient rows with no join and no suppression (rolled
back): the least any resolution has to pay for the rows it writes, i.e. the bound on the target.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from bench import config
from bench.config import Targets
from bench.report import Figure
from bench.stack import ChildResult, StepTimeout, cancel_queries, emulator, step
from passpush import localdev

SEGMENTS: dict[str, dict[str, Any]] = {
    "all_active": {"audience": "all_active"},
    "slumber": {"audience": "segment", "segment": "slumber", "segment_params": {"days": 30}},
    "whale": {"audience": "segment", "segment": "whale", "segment_params": {"min_points": 500}},
    "local": {"audience": "segment", "segment": "local", "segment_params": {"zips": ["90210", "10001"]}},
}
MESSAGE = "Hi {first_name|there}, {points} points are waiting for you!"
STEP_TIMEOUT = 240.0  # a resolution slower than this is stopped and reported as "> 240 s"


@dataclass
class Timed:
    seconds: float
    peak_rss_mb: float
    rows: int
    db_cpu_seconds: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class AudienceRun:
    size: int
    steps: dict[str, Timed] = field(default_factory=dict)


def _timed(result: ChildResult, rows: int) -> Timed:
    r = result.result
    return Timed(r["seconds"], result.peak_rss_mb, rows, r.get("db_cpu_seconds"))


def _settle(conninfo: str) -> None:
    """Vacuum the recipient table before a timed resolution (untimed).

    Each resolution writes up to a million rows; left alone, autovacuum picks them up in the middle of
    the next resolution, on the same two cores, and that one measures both (seen: 9.7 s alone, 15.1 s
    with autovacuum alongside). A vacuumed table is also what a campaign meets in production, where
    resolutions are minutes or days apart.
    """
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE) push_campaign_recipients")


def _resolve_once(conninfo: str, log_dir: Path, conf: dict[str, Any], label: str,
                  env: dict[str, str]) -> tuple[Timed, dict[str, Any]]:
    _settle(conninfo)
    try:
        result = step("resolve", {"conninfo": conninfo, "conf": conf}, log_dir, label, env=env,
                      timeout=float(env.get("BENCH_STEP_TIMEOUT", STEP_TIMEOUT)))
    except StepTimeout as err:  # the resolution is measured as "more than the time-out"
        cancel_queries(conninfo)
        return Timed(err.seconds, err.peak_rss_mb, 0, extra={"timed_out": True}), {}
    preview = result.result["preview"]
    return _timed(result, preview["targeted"]), result.result


def _resolve(conninfo: str, log_dir: Path, conf: dict[str, Any], label: str, env: dict[str, str],
             rounds: int = 1) -> tuple[Timed, dict[str, Any]]:
    """Resolve the same audience ``rounds`` times: the median round, and the first round's result.

    The first round's campaign is kept (planning uses all_active's); later rounds' campaigns are deleted
    once timed, so the steps after them (the next segment, planning) meet the table a single round left,
    and every later round meets the table the second one met.
    """
    timings: list[Timed] = []
    first: dict[str, Any] = {}
    for i in range(rounds):
        timed, result = _resolve_once(conninfo, log_dir, conf, label if i == 0 else f"{label}-round{i + 1}", env)
        timings.append(timed)
        if i == 0:
            first = result
        elif result:
            _delete_campaign(conninfo, result["campaign_id"])
        if timed.extra.get("timed_out"):
            break
    return _median(timings), first


def _delete_campaign(conninfo: str, campaign_id: str) -> None:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("DELETE FROM push_campaigns WHERE id = %s", (campaign_id,))


def _median(timings: list[Timed]) -> Timed:
    """The round of median time (the slower middle one of an even count), with every round's time and
    the highest peak memory of them all."""
    ranked = sorted(timings, key=lambda t: t.seconds)
    middle = ranked[len(ranked) // 2]
    rounds = [round(t.seconds, 2) for t in timings]
    extra = {**middle.extra, "rounds": rounds} if len(timings) > 1 else middle.extra
    return Timed(middle.seconds, max(t.peak_rss_mb for t in timings), middle.rows, middle.db_cpu_seconds, extra)


def _conf(program_id: str, size: int, **audience: Any) -> dict[str, Any]:
    return {"program_id": program_id, "name": "bench audience", "message": MESSAGE, "dry_run": True,
            **audience}


def run_size(conninfo: str, log_dir: Path, size: int, env: dict[str, str], seed: int,
             rounds: int = 1) -> AudienceRun:
    run = AudienceRun(size)
    program = step("seed", {"conninfo": conninfo, "members": size, "seed": seed, "realistic": True},
                   log_dir, f"seed-audience-{size}", timeout=3600).result
    pid = program["program_id"]
    step("history", {"conninfo": conninfo, "program_id": pid, "days": 3}, log_dir, f"history-{size}")
    plan_campaign = ""
    for name, audience in SEGMENTS.items():
        conf = _conf(pid, size, **audience)
        if name == "all_active":  # this one is planned as well: it must be a real (not dry-run) campaign
            conf.update(dry_run=False, confirm_recipients=size)
        run.steps[name], result = _resolve(conninfo, log_dir, conf, f"resolve-{name}-{size}", env, rounds)
        plan_campaign = plan_campaign or result.get("campaign_id", "")
    csv_path = Path(env["PASSPUSH_UPLOAD_DIR"]) / f"members-{size}.csv"
    step("write_csv", {"conninfo": conninfo, "program_id": pid, "path": str(csv_path)}, log_dir, f"csv-{size}")
    run.steps["csv"], _ = _resolve(conninfo, log_dir, _conf(pid, size, audience="csv", csv_path=str(csv_path)),
                                   f"resolve-csv-{size}", env, rounds)
    if plan_campaign:
        planned = step("plan", {"conninfo": conninfo, "campaign_id": plan_campaign}, log_dir, f"plan-{size}",
                       env=env)
        run.steps["plan"] = Timed(planned.result["seconds"], planned.peak_rss_mb, run.steps["all_active"].rows,
                                  extra={"batches": planned.result["batches"]})
    _settle(conninfo)
    floor = step("insert_floor", {"conninfo": conninfo, "program_id": pid}, log_dir, f"floor-{size}")
    run.steps["insert_floor"] = _timed(floor, floor.result["rows"])
    return run


def run_all(conninfo: str, log_dir: Path, sizes: tuple[int, ...], airflow_home: Path,
            step_timeout: float = STEP_TIMEOUT, rounds: int = 1) -> list[AudienceRun]:
    """Every size, with one small emulator for plan_batches' credentials check; each resolution
    ``rounds`` times."""
    emu = emulator(log_dir, "audience")
    try:
        passkit = localdev.passkit_connection_json(emu.url, emu.api_key, emu.api_secret)
        env = localdev.airflow_env(conninfo, passkit, airflow_home=airflow_home)
        env["PASSPUSH_UPLOAD_DIR"] = str(log_dir.parent / "uploads")
        env["BENCH_STEP_TIMEOUT"] = str(step_timeout)
        return [run_size(conninfo, log_dir, size, env, seed=400 + i, rounds=rounds) for i, size in enumerate(sizes)]
    finally:
        emu.stop()


def _db_note(t: Timed) -> str:
    if t.extra.get("timed_out"):
        return f"stopped after {t.seconds:.0f} s (time-out)"
    cpu = f"; database CPU {t.db_cpu_seconds:.1f} s" if t.db_cpu_seconds is not None else ""
    return f"{t.rows:,} rows{cpu}; peak {t.peak_rss_mb:.0f} MB{_rounds_note(t)}"


def _rounds_note(t: Timed) -> str:
    rounds = t.extra.get("rounds")
    return f"; median of {len(rounds)} rounds: {', '.join(f'{r:g}' for r in rounds)} s" if rounds else ""


def scale_figures(run: AudienceRun, targets: Targets) -> list[Figure]:
    """Scenario 4 at the largest size, against the targets."""
    n = f"{run.size:,} passes"
    figures = [Figure("4 audience", f"segment {name} resolved, {n}", run.steps[name].seconds, "s",
                      targets.segment_seconds, "<=", _db_note(run.steps[name])) for name in SEGMENTS]
    plan = run.steps.get("plan", Timed(float("nan"), 0.0, 0, extra={"batches": None}))
    floor = run.steps["insert_floor"]
    figures += [
        Figure("4 audience", f"CSV of {run.size:,} ids loaded and matched", run.steps["csv"].seconds,
               "s", targets.csv_seconds, "<=", _db_note(run.steps["csv"])),
        Figure("4 audience", f"plan_batches for {plan.rows:,} recipients", plan.seconds, "s", targets.plan_seconds,
               "<=", f"peak {plan.peak_rss_mb:.0f} MB"),
        Figure("4 audience", "mapped send_batch tasks", plan.extra["batches"], "", targets.max_map_length / 4, "<=",
               f"max_map_length {targets.max_map_length}; batch_size {config.DEFAULT_BATCH_SIZE}, capped batches"),
        Figure("4 audience", "peak memory of any task", max(t.peak_rss_mb for t in run.steps.values()), "MB",
               targets.task_peak_mb, "<=", "child process per task, imports included"),
        Figure("4 audience", f"bound: writing {floor.rows:,} recipient rows alone", floor.seconds, "s",
               note=_db_note(floor) + "; no join, no suppression (rolled back)"),
    ]
    return figures


def growth_figures(runs: list[AudienceRun]) -> list[Figure]:
    figures = []
    for run in runs:
        for name in ("all_active", "csv", "plan", "insert_floor"):
            t = run.steps.get(name)
            if t is None:
                continue
            note = (_db_note(t) if t.extra.get("timed_out") else
                    f"{t.seconds / max(t.rows, 1) * 1e5:.2f} s per 100k rows; peak {t.peak_rss_mb:.0f} MB"
                    f"{_rounds_note(t)}")
            figures.append(Figure("6 growth", f"audience {run.size:,}: {name}", t.seconds, "s", note=note))
    return figures


def details(runs: list[AudienceRun]) -> list[dict[str, Any]]:
    return [{"size": r.size, "steps": {k: v.__dict__ for k, v in r.steps.items()}} for r in runs]
