"""``python -m bench.run``: every scenario of issue 6 in one run, one table, JSON and RESULTS.md.

Modes: full (default, ~15 minutes on 2 cores in a fast hour, about twice that in a slow one),
``--quick`` (smaller sizes, a few minutes) and ``--smoke`` (tiny sizes, the task functions in-process
instead of ``airflow dags test``: what the smoke test runs). ``--only 1,3`` runs some scenarios; the
baseline's ratios need scenario 1.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import audience_scale, delivery, engine, report
from bench.config import FULL, MODES, Sizes, Targets
from bench.dagrun import Runner
from bench.delivery import DeliveryRun, Scenario
from bench.stack import OUT_DIR, cpu_check, machine, scratch_database

log = logging.getLogger("bench")
ALL_SCENARIOS = ("1", "2", "3", "4", "5")


@dataclass
class Bench:
    sizes: Sizes
    runner: Runner
    targets: Targets = field(default_factory=Targets)
    figures: list[report.Figure] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    delivery_runs: dict[str, DeliveryRun] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)
    seed: int = 100
    step_timeout: float = audience_scale.STEP_TIMEOUT

    def next_seed(self) -> int:
        self.seed += 1
        return self.seed

    def deliver(self, scenario: Scenario, recipients: int) -> DeliveryRun:
        print(f"-- {scenario.key}: {recipients:,} recipients, {scenario.mode}, batch {scenario.batch_size}",
              flush=True)
        result = delivery.run_delivery(self.runner, scenario, recipients, self.next_seed())
        self.delivery_runs[scenario.key] = result
        self.details[scenario.key] = result.as_dict()
        return result


def scenario_1(bench: Bench) -> None:
    n, batch = bench.sizes.delivery_recipients, bench.sizes.delivery_batch
    for mode in bench.sizes.modes:
        result = bench.deliver(Scenario(f"s1-{mode}", mode, batch), n)
        bench.figures += delivery.efficiency_figures(result, bench.targets, f"{mode}, batch {batch}")


def scenario_2(bench: Bench) -> None:
    batch = bench.sizes.delivery_batch
    result = bench.deliver(Scenario("s2-merge-faults", "merge", batch, faults=True), bench.sizes.delivery_recipients)
    bench.figures += delivery.efficiency_figures(result, bench.targets, f"merge, batch {batch}")


def scenario_3(bench: Bench) -> None:
    n, first = bench.sizes.dag_engine_recipients, bench.sizes.dag_batches[0]
    runs = [(mode, first) for mode in bench.sizes.modes]
    runs += [("merge", b) for b in bench.sizes.dag_batches[1:]]
    for mode, batch in runs:
        result = bench.deliver(Scenario(f"s3-{mode}-{batch}", mode, batch, limited=False), n)
        bench.figures += delivery.engine_dag_figures(result, bench.targets, f"{mode}, batch {batch}")
    sizes = [(s, "merge") for s in bench.sizes.engine_growth]
    if "read_modify_write" in bench.sizes.modes:  # the pool bounded it: the previous default side by side
        sizes += [(bench.sizes.engine_rmw_size, "read_modify_write")] * 2
    engine_runs = []
    for i, (size, mode) in enumerate(sizes):
        previous = i == len(sizes) - 1 and mode != "merge"
        connections = engine.PREVIOUS_CONNECTIONS if previous else engine.DEFAULT_CONNECTIONS
        print(f"-- engine alone: {size:,} recipients, {mode}, {connections} connections", flush=True)
        engine_runs.append(engine.run_engine(bench.runner.conninfo, bench.runner.log_dir, size, mode,
                                             bench.next_seed(), connections))
    bench.figures += engine.engine_figures(engine_runs)
    bench.figures += engine.growth_figures([r for r in engine_runs if r.mode == "merge"])
    bench.details["engine"] = engine.details(engine_runs)


def scenario_4(bench: Bench) -> None:
    print(f"-- audience at {', '.join(f'{s:,}' for s in bench.sizes.audience_growth)} passes", flush=True)
    runs = audience_scale.run_all(bench.runner.conninfo, bench.runner.log_dir, bench.sizes.audience_growth,
                                  bench.runner.airflow_home, bench.step_timeout, bench.sizes.audience_rounds)
    bench.figures += audience_scale.scale_figures(runs[-1], bench.targets)
    bench.figures += audience_scale.growth_figures(runs)
    bench.details["audience"] = audience_scale.details(runs)


def scenario_5(bench: Bench) -> None:
    for faults, key in ((False, "s1-merge"), (True, "s2-merge-faults")):
        print(f"-- naive baseline{' with faults' if faults else ''}: {bench.sizes.baseline_recipients:,} recipients",
              flush=True)
        naive = delivery.run_baseline(bench.runner.log_dir, bench.runner.conninfo, bench.sizes, faults,
                                      bench.next_seed())
        bench.details[f"naive-{key}"] = naive
        if key in bench.delivery_runs:
            label = "with faults" if faults else "no faults"
            bench.figures += delivery.baseline_figures(naive, bench.delivery_runs[key], label)


SCENARIOS: dict[str, Callable[[Bench], None]] = {
    "1": scenario_1, "2": scenario_2, "5": scenario_5, "3": scenario_3, "4": scenario_4,
}


def run_scenario(bench: Bench, key: str) -> None:
    """Run one scenario; a failure is reported as a figure, and the other scenarios still run."""
    begun = time.monotonic()
    try:
        SCENARIOS[key](bench)
    except Exception as err:  # recorded in the table and the JSON, with the traceback in the output
        log.exception("scenario %s failed", key)
        bench.failed.append(key)
        bench.figures.append(report.Figure(key, "scenario failed", None, note=f"{type(err).__name__}: {err}"[:300]))
    print(f"   scenario {key} took {time.monotonic() - begun:.0f} s", flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_const", dest="mode", const="quick", help="smaller sizes")
    mode.add_argument("--smoke", action="store_const", dest="mode", const="smoke",
                      help="tiny sizes, task functions in-process (the smoke test)")
    parser.add_argument("--only", default=",".join(ALL_SCENARIOS), help="scenarios to run, e.g. 1,3")
    parser.add_argument("--server", help="PostgreSQL server (admin conninfo); default 127.0.0.1:5432, "
                                         "else the embedded server")
    parser.add_argument("--database", default="passpush_bench", help="scratch database, created and dropped")
    parser.add_argument("--out", type=Path, default=OUT_DIR, help="where results.json and the logs go")
    parser.add_argument("--no-record", action="store_true", help="do not rewrite bench/RESULTS.md")
    parser.add_argument("--keep-database", action="store_true")
    parser.add_argument("--step-timeout", type=float, default=audience_scale.STEP_TIMEOUT,
                        help="seconds after which one audience resolution is stopped (reported as '> t')")
    return parser.parse_args(argv)


def _meta(sizes: Sizes, runner: Runner, started: float, selected: list[str], final: bool = False) -> dict[str, Any]:
    return {"mode": sizes.name, "runner": runner.kind, "scenarios": selected,
            "finished": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "seconds": time.monotonic() - started, "airflow_prepare_seconds": runner.prepared_seconds,
            "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
            "cpu_check_ns_at_end": cpu_check() if final else None}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.out = args.out.resolve()  # Airflow's home and the CSV upload folder must be absolute
    sizes = MODES[args.mode] if args.mode else FULL
    selected = [s for s in SCENARIOS if s in args.only.split(",")]
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    started = time.monotonic()
    log_dir = args.out / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    with scratch_database(args.database, args.server, keep=args.keep_database) as url:
        runner = Runner(url, log_dir, sizes.runner, args.out / "airflow")
        bench = Bench(sizes, runner, step_timeout=args.step_timeout)
        info = machine(url)
        print(f"bench ({sizes.name}): scenarios {', '.join(selected)}; database {args.database}; "
              f"load average {info['load_average_at_start']}", flush=True)
        for key in selected:
            run_scenario(bench, key)
            report.write_json(args.out / "results.json", bench.figures, info,
                              _meta(sizes, runner, started, selected), bench.details)
    meta = _meta(sizes, runner, started, selected, final=True)
    print("\n" + report.table(bench.figures))
    report.write_json(args.out / "results.json", bench.figures, info, meta, bench.details)
    print(f"\n{args.out / 'results.json'}; {meta['seconds']:.0f} s in all")
    if sizes.record and not args.no_record and selected == list(SCENARIOS) and not bench.failed:
        report.record_latest(report.markdown(bench.figures, info, meta))
        print(f"latest table recorded in {report.RESULTS_MD}")
    return 1 if bench.failed else 0


if __name__ == "__main__":
    sys.exit(main())
