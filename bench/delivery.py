"""Scenarios 1, 2 and 3 (through the DAG) and 5 (the naive baseline on the same emulator settings).

What PassKit saw is read from the emulator: every request's arrival time (its request log), the
requests its rate limiter refused (429s passpush provoked), the faults it injected, and which passes
were updated (lock-screen notifications on Apple passes, silent updates on Google ones), so "nothing
lost" and "nobody buzzed twice" are checked on the phones' side, not on passpush's own books.
"""

from __future__ import annotations

import itertools
import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from bench import config
from bench.config import Sizes, Targets
from bench.dagrun import CampaignRun, Runner, run_campaign
from bench.report import Figure
from bench.stack import emulator, step
from passpush.emulator.control import EmulatorControl, EmulatorProcess
from passpush.passkit import PassKitSettings

GAP_SECONDS = 0.25  # a pause between two requests this long is a gap (at 196/s they come every 5 ms)
MEMBER_ROUTES = ("GET /members/member/id/", "PUT /members/member")


@dataclass
class Delivery:
    requests: int
    rate_limited: int  # 429s from the emulator's rate limiter: provoked by the sender
    injected_faults: int
    span_seconds: float  # first to last request to a member
    requests_per_second: float
    within_tasks_rps: float  # the same with pauses of more than GAP_SECONDS taken out
    gaps: int
    gap_seconds: float
    max_per_100ms: int
    delivered_passes: int
    notifications: int
    members_over_1: int
    first_request: float = 0.0  # epoch seconds
    last_request: float = 0.0
    emulator_stalls: int = 0  # the emulator's event loop held up >= 25 ms while sending (stamps arrivals late)
    emulator_longest_stall_ms: float = 0.0
    bucket_low_tokens: float | None = None  # the emulator's bucket replayed: its lowest level (None: no limit)
    bucket_low_at: float = 0.0  # seconds into the send phase
    rate_limited_at: list[float] = field(default_factory=list)  # each 429, seconds into the send phase


def _member_requests(control: EmulatorControl, limit: int) -> list[tuple[float, int | str]]:
    """(arrival in epoch seconds, status) of every request to a member, in arrival order."""
    rows = []
    for entry in control.request_log(limit=limit):
        if entry["route"].startswith(MEMBER_ROUTES):
            rows.append((_epoch(entry["time"]) - entry["ms"] / 1000.0, entry["status"]))
    return sorted(rows, key=lambda row: row[0])


def bucket_low(arrivals: list[float], rate: float, burst: float) -> tuple[float, float]:
    """Replay the arrivals through a token bucket like the emulator's: its lowest level, and when.

    A request that finds less than one token is refused and takes none, as in the emulator. How low the
    bucket went says how close a run came to a 429 where it provoked none, and how deep a burst was
    where it did.
    """
    tokens, last, low, low_at = burst, arrivals[0] if arrivals else 0.0, burst, 0.0
    for t in arrivals:
        tokens = min(burst, tokens + (t - last) * rate)
        last = t
        if tokens >= 1.0:
            tokens -= 1.0
        if tokens < low:
            low, low_at = tokens, t
    return low, low_at


def _delivered(control: EmulatorControl, program: str) -> int:
    events = control.notifications(kind="all", program_id=program)
    return len({e["passId"] for e in events if e["kind"] in ("notification", "silent")})


def measure(control: EmulatorControl, passkit_program_id: str, log_limit: int,
            bucket: tuple[float, float] | None = None, dump_to: Path | None = None) -> Delivery:
    """What the emulator saw; ``bucket`` is its rate limit (rate, burst), replayed over the arrivals."""
    requests = _member_requests(control, log_limit)
    if dump_to is not None:  # for a look at the arrivals after the run (a 429, a gap)
        dump_to.write_text(json.dumps([{"at": round(t, 6), "status": status} for t, status in requests]))
    arrivals = [t for t, _ in requests]
    start = arrivals[0] if arrivals else 0.0
    low, low_at = bucket_low(arrivals, *bucket) if bucket and bucket[0] > 0 else (None, start)
    span = arrivals[-1] - arrivals[0] if len(arrivals) > 1 else 0.0
    pauses = [b - a for a, b in itertools.pairwise(arrivals) if b - a > GAP_SECONDS]
    per_100ms = Counter(int(t * 10) for t in arrivals)
    stats, summary = control.stats(), control.notification_summary(passkit_program_id)
    busy = span - sum(pauses)
    return Delivery(
        requests=len(arrivals), rate_limited=int(stats["rate_limited"]), injected_faults=int(stats["faults_total"]),
        span_seconds=span, requests_per_second=(len(arrivals) - 1) / span if span else 0.0,
        within_tasks_rps=(len(arrivals) - 1 - len(pauses)) / busy if busy > 0 else 0.0,
        gaps=len(pauses), gap_seconds=sum(pauses), max_per_100ms=max(per_100ms.values(), default=0),
        delivered_passes=_delivered(control, passkit_program_id), notifications=int(summary["total"]),
        members_over_1=int(summary["members_over_1"]), first_request=arrivals[0] if arrivals else 0.0,
        last_request=arrivals[-1] if arrivals else 0.0, **_stalls_while_sending(stats, arrivals),
        bucket_low_tokens=low, bucket_low_at=low_at - start,
        rate_limited_at=[round(t - start, 3) for t, status in requests if status == 429])


def _stalls_while_sending(stats: dict[str, Any], arrivals: list[float]) -> dict[str, Any]:
    """The emulator's loop stalls between the first and the last request (seeding the emulator and
    reading its request log stall it too, outside the send phase)."""
    stalls = [row["ms"] for row in stats["loop_stalls"]["recent"]
              if arrivals and arrivals[0] <= _epoch(row["at"]) <= arrivals[-1] + 1.0]
    return {"emulator_stalls": len(stalls), "emulator_longest_stall_ms": max(stalls, default=0.0)}


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


@dataclass
class Scenario:
    key: str
    mode: str  # metadata_update: read_modify_write (GET + PUT per send) or merge (one PUT)
    batch_size: int
    limited: bool = True
    faults: bool = False

    @property
    def requests_per_send(self) -> int:
        return 2 if self.mode == "read_modify_write" else 1


def _emulator_settings(scenario: Scenario, recipients: int) -> dict[str, Any]:
    settings: dict[str, Any] = {"request_log_size": int(recipients * 2.5) + 1000}
    if scenario.limited:
        settings.update(rate_limit_per_second=config.LIMIT_PER_SECOND, latency_ms_min=config.LATENCY_MS[0],
                        latency_ms_max=config.LATENCY_MS[1])
    else:
        settings.update(latency_ms_min=config.ENGINE_LATENCY_MS[0], latency_ms_max=config.ENGINE_LATENCY_MS[1])
    if scenario.faults:
        settings.update(config.FAULTS)
    return settings


def _bucket(emu: EmulatorProcess) -> tuple[float, float]:
    return emu.settings.rate_limit_per_second, float(emu.settings.effective_burst())


def _check_alive(emu: EmulatorProcess) -> None:
    if not emu.running():
        raise RuntimeError(f"the emulator exited during the run (code {emu.process.returncode}); "
                           f"see {emu.log_path}: the run's figures would be meaningless")


def seed_into(runner: Runner, emu: EmulatorProcess, members: int, seed: int, label: str) -> dict[str, Any]:
    return step("seed", {"conninfo": runner.conninfo, "members": members, "seed": seed,
                         "emulator_url": emu.url}, runner.log_dir, f"seed-{label}").result


def conf_for(program: dict[str, Any], batch_size: int) -> dict[str, Any]:
    eligible = program["eligible_apple"] + program["eligible_google"]
    return {"program_id": program["program_id"], "name": "bench", "message": config.MESSAGE,
            "audience": "all_active", "dry_run": False, "confirm_recipients": eligible, "batch_size": batch_size}


@dataclass
class DeliveryRun:
    scenario: Scenario
    recipients: int
    run: CampaignRun
    delivery: Delivery
    rate: float

    def as_dict(self) -> dict[str, Any]:
        return {"scenario": asdict(self.scenario), "recipients": self.recipients, "run": asdict(self.run),
                "delivery": asdict(self.delivery), "rate": self.rate}


def run_delivery(runner: Runner, scenario: Scenario, recipients: int, seed: int) -> DeliveryRun:
    """Fresh emulator and program, one campaign through the DAG, what the emulator saw."""
    settings = _emulator_settings(scenario, recipients)
    rate = config.LIMIT_PER_SECOND * config.RATE_FACTOR if scenario.limited else config.UNTHROTTLED_RATE
    emu = emulator(runner.log_dir, scenario.key, **settings)
    try:
        runner.prepare(emu)
        program = seed_into(runner, emu, recipients, seed, scenario.key)
        run = run_campaign(runner, emu, conf_for(program, scenario.batch_size), rate=rate, mode=scenario.mode,
                           label=f"dag-{scenario.key}")
        _check_alive(emu)
        delivery = measure(emu.control, program["passkit_program_id"], settings["request_log_size"],
                           bucket=_bucket(emu), dump_to=runner.log_dir / f"requests-{scenario.key}.json")
    finally:
        emu.stop()
    return DeliveryRun(scenario, program["eligible_apple"] + program["eligible_google"], run, delivery, rate)


def _sends_per_second(result: DeliveryRun) -> float:
    sends = result.run.campaign.get("sent_count") or 0
    return sends / result.delivery.span_seconds if result.delivery.span_seconds else 0.0


def _around_sends(result: DeliveryRun) -> str:
    """How the run's time splits: before the first request, sending, after the last one."""
    bounds, d = result.run.bounds, result.delivery
    if not bounds or not d.first_request:
        return ""
    first_task = result.run.first_task
    harness = (f" ({first_task - bounds[0]:.1f} s of it airflow dags test starting up, before the first task)"
               if first_task else "")
    return (f"; {d.first_request - bounds[0]:.1f} s before the first request{harness}, {d.span_seconds:.1f} s "
            f"sending, {bounds[1] - d.last_request:.1f} s after the last")


def _rate_limit_note(d: Delivery) -> str:
    """How close the run came to PassKit's bucket, and whether the emulator itself stalled."""
    parts = []
    if d.bucket_low_tokens is not None:
        parts.append(f"the emulator's bucket at its lowest {d.bucket_low_tokens:.1f} tokens, "
                     f"{d.bucket_low_at:.1f} s into sending")
    if d.rate_limited_at:
        shown = ", ".join(f"{t:.1f}" for t in d.rate_limited_at[:8])
        parts.append(f"429s at {shown}{' ...' if len(d.rate_limited_at) > 8 else ''} s")
    parts.append(f"the emulator's event loop stalled {d.emulator_stalls} times >= 25 ms while sending"
                 + (f", longest {d.emulator_longest_stall_ms:.0f} ms" if d.emulator_stalls else ""))
    parts.append(f"peak {d.max_per_100ms} requests in 100 ms")
    return "; ".join(parts)


def efficiency_figures(result: DeliveryRun, targets: Targets, label: str) -> list[Figure]:
    """Scenario 1 or 2: rate against the limit, whole run against the ideal, 429s, lost, twice."""
    d, run, s = result.delivery, result.run, result.scenario
    limit = config.LIMIT_PER_SECOND
    target = targets.efficiency_faults if s.faults else targets.efficiency
    ideal = result.recipients * s.requests_per_send / limit
    lost = result.recipients - d.delivered_passes
    sc = "2 faults" if s.faults else "1 delivery"
    rps_note = (f"{d.requests_per_second / limit:.1%} of the limit; passpush set to {result.rate:g}/s "
                f"({config.RATE_FACTOR:g}x); {_sends_per_second(result):.0f} sends/s")
    figures = [
        Figure(sc, f"request rate over the send phase, {label}", d.requests_per_second, "req/s",
               target * limit, ">=", rps_note),
        Figure(sc, f"request rate within send_batch tasks, {label}", d.within_tasks_rps, "req/s",
               target * limit, ">=", f"{d.gaps} gaps > {GAP_SECONDS:g} s between tasks, {d.gap_seconds:.1f} s"),
        Figure(sc, f"429s provoked by passpush, {label}", d.rate_limited, "", 0, "==", note=_rate_limit_note(d)),
        Figure(sc, f"messages lost, {label}", lost, "", 0, "==",
               f"{d.delivered_passes} of {result.recipients} passes updated; campaign {run.campaign.get('status')}"),
        Figure(sc, f"members buzzed twice, {label}", d.members_over_1, "", 0, "=="),
    ]
    if not s.faults:
        figures.insert(2, Figure(sc, f"whole DAG run, {label}", run.run_seconds, "s",
                                 targets.dag_vs_ideal * ideal, "<=",
                                 f"ideal {ideal:.0f} s = {result.recipients * s.requests_per_send} requests / "
                                 f"{limit:g}/s; {run.run_seconds / ideal:.3f}x ideal{_around_sends(result)}; "
                                 f"CLI process {run.process_seconds:.0f} s"))
        if run.first_task and run.bounds:
            from_first = run.bounds[1] - run.first_task
            figures.insert(3, Figure(sc, f"DAG run from its first task, {label}", from_first, "s", note=(
                f"{from_first / ideal:.3f}x ideal: the whole run less airflow dags test's start-up")))
    else:
        figures.append(Figure(sc, f"faults injected, {label}", d.injected_faults, "", note=(
            f"{d.injected_faults / max(d.requests, 1):.1%} of requests; campaign failed_count "
            f"{run.campaign.get('failed_count')}")))
    figures.append(Figure(sc, f"peak RSS of the airflow process, {label}", run.peak_rss_mb, "MB",
                          targets.task_peak_mb, "<=", "every task of the run, and Airflow, in one process"))
    return figures


def engine_dag_figures(result: DeliveryRun, targets: Targets, label: str) -> list[Figure]:
    """Scenario 3 through the DAG: sends per second over the send phase, emulator included."""
    d, run = result.delivery, result.run
    connections = PassKitSettings.max_connections  # the DAG's connection keeps the default pool size
    ceiling = connections / (config.ENGINE_LATENCY_MS[0] / 1000) / result.scenario.requests_per_send
    return [
        Figure("3 engine", f"sends/s through the DAG, {label}", _sends_per_second(result), "sends/s",
               targets.engine_sends_per_second, ">=",
               f"{d.requests_per_second:.0f} req/s; ceiling {ceiling:,.0f} = {connections} connections / 20 ms / "
               f"requests per send; {d.gaps} gaps between tasks ({d.gap_seconds:.1f} s); "
               f"DAG run {run.run_seconds:.1f} s{_around_sends(result)}, CLI {run.process_seconds:.0f} s"),
        Figure("3 engine", f"sends/s within send_batch tasks, {label}",
               d.within_tasks_rps / result.scenario.requests_per_send, "sends/s"),
    ]


def run_baseline(log_dir: Path, conninfo: str, sizes: Sizes, faults: bool, seed: int) -> dict[str, Any]:
    """Scenario 5: the naive sender against the emulator settings of scenario 1 (or 2)."""
    scenario = Scenario("naive-faults" if faults else "naive", "merge", 0, faults=faults)
    settings = _emulator_settings(scenario, sizes.baseline_recipients)
    emu = emulator(log_dir, scenario.key, **settings)
    try:
        program = step("seed", {"conninfo": conninfo, "members": sizes.baseline_recipients, "seed": seed,
                                "emulator_url": emu.url}, log_dir, f"seed-{scenario.key}").result
        result = step("baseline", {"conninfo": conninfo, "program_id": program["program_id"], "url": emu.url,
                                   "api_key": emu.api_key, "api_secret": emu.api_secret,
                                   "limit": sizes.baseline_recipients, "message": config.MESSAGE},
                      log_dir, f"baseline-{scenario.key}").result
        _check_alive(emu)
        delivery = measure(emu.control, program["passkit_program_id"], settings["request_log_size"],
                           bucket=_bucket(emu))
    finally:
        emu.stop()
    return {"naive": result, "delivery": asdict(delivery), "recipients": result["members"]}


def baseline_figures(naive: dict[str, Any], passpush: DeliveryRun, label: str) -> list[Figure]:
    """Scenario 5: the naive sender next to passpush on the same settings."""
    n, d = naive["naive"], naive["delivery"]
    naive_rate = n["sent"] / n["seconds"] if n["seconds"] else 0.0
    ours = _sends_per_second(passpush)
    lost = naive["recipients"] - d["delivered_passes"]
    ours_lost = passpush.recipients - passpush.delivery.delivered_passes
    projected = passpush.recipients / naive_rate if naive_rate else float("nan")
    return [
        Figure("5 baseline", f"naive sends/s, {label}", naive_rate, "sends/s",
               note=f"{naive['recipients']} recipients; 20k would take {projected:.0f} s"),
        Figure("5 baseline", f"throughput passpush / naive, {label}", ours / naive_rate if naive_rate else None,
               "x", note=f"passpush {ours:.0f} sends/s (merge, same settings)"),
        Figure("5 baseline", f"naive messages lost, {label}", lost, "",
               note=f"{lost / max(naive['recipients'], 1):.1%}; passpush lost {ours_lost}"),
        Figure("5 baseline", f"naive 429s provoked, {label}", d["rate_limited"], "",
               note=f"passpush {passpush.delivery.rate_limited}; naive peak {d['max_per_100ms']} req per 100 ms, "
                    f"the emulator's bucket at its lowest {d['bucket_low_tokens']:.1f} tokens"),
    ]
