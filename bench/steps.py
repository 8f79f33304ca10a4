"""Work done inside child processes: ``python -m bench.steps NAME`` with JSON arguments on stdin.

Each step times only its own work (imports and connections excluded) and prints one
``BENCH-RESULT {json}`` line; the parent adds the process's CPU time and peak RSS (``wait4``).
"""

from __future__ import annotations

import json
import logging
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import psycopg

from bench.stack import RESULT_PREFIX, backend_cpu_seconds

log = logging.getLogger("bench.steps")


def seed(args: dict[str, Any]) -> dict[str, Any]:
    """A program in Postgres (and in the emulator when ``emulator_url`` is given)."""
    from passpush.emulator.control import EmulatorControl
    from passpush.seed import SeedSpec, seed_program

    shares = {} if args.get("realistic") else {"inactive_share": 0.0, "opted_out_share": 0.0,
                                                "missing_passkit_id_share": 0.0}
    spec = SeedSpec(members=args["members"], seed=args["seed"], name=f"Bench {args['members']}", **shares)
    control = EmulatorControl(args["emulator_url"]) if args.get("emulator_url") else None
    started = time.monotonic()
    program = seed_program(args["conninfo"], spec, control)
    with psycopg.connect(args["conninfo"], autocommit=True) as conn:
        # A production table is long settled (vacuumed: pages all-visible, a visibility map). A freshly
        # loaded one is not, and stays so where autovacuum is off (this machine's server): every timed
        # resolution read it the slow way (all_active 16.0 s against 10.4, bench/RESULTS.md).
        conn.execute("VACUUM (ANALYZE) passes_master, users")
    return {**asdict(program), "seconds": time.monotonic() - started}


HISTORY_SQL = """
INSERT INTO push_campaign_recipients
    (campaign_id, member_id, pass_id, passkit_id, wallet, batch_no, rendered_message, status, attempts,
     sent_at, updated_at)
SELECT %(campaign_id)s, p.external_id, p.id, p.passkit_internal_id, p.wallet, 0,
       'Last week: ' || trim_scale(p.points_balance)::text || ' points', 'SENT', 1,
       now() - make_interval(days => %(days)s), now() - make_interval(days => %(days)s)
FROM passes_master p
WHERE p.program_id = %(program_id)s AND p.status = 'ACTIVE' AND p.passkit_internal_id IS NOT NULL
"""


def history(args: dict[str, Any]) -> dict[str, Any]:
    """An earlier campaign that reached every member ``days`` ago: suppression has rows to read."""
    started = time.monotonic()
    with psycopg.connect(args["conninfo"]) as conn:
        row = conn.execute(
            # an id as passpush gives its campaigns (migration 033): later campaigns sort after it
            "INSERT INTO push_campaigns (id, program_id, name, message_text, status, dry_run, finished_at)"
            " VALUES (passpush_new_campaign_id(), %s, 'earlier campaign', 'Last week: {points} points',"
            " 'COMPLETED', false, now() - make_interval(days => %s)) RETURNING id",
            (args["program_id"], args["days"])).fetchone()
        assert row is not None
        cur = conn.execute(HISTORY_SQL, {"campaign_id": row[0], "program_id": args["program_id"],
                                         "days": args["days"]})
        rows = cur.rowcount
    with psycopg.connect(args["conninfo"], autocommit=True) as conn:
        # Days-old deliveries have been through autovacuum: their pages are all-visible, so suppression's
        # index-only look-ups stay index-only, as they would in production.
        conn.execute("VACUUM ANALYZE push_campaign_recipients")
    return {"rows": rows, "seconds": time.monotonic() - started}


def resolve(args: dict[str, Any]) -> dict[str, Any]:
    """Create a campaign and resolve its audience (what the resolve_audience task does)."""
    from passpush import audience, tasks

    url = args["conninfo"]
    campaign_id = tasks.create_campaign(args["conf"], dag_id="bench", run_id=str(uuid.uuid4()), conninfo=url)
    with psycopg.connect(url) as conn:
        cpu = backend_cpu_seconds(conn)
        started = time.monotonic()
        preview = audience.resolve(conn, campaign_id)
        seconds = time.monotonic() - started
        after = backend_cpu_seconds(conn)
    return {"campaign_id": campaign_id, "seconds": seconds, "preview": preview.as_dict(),
            "db_cpu_seconds": after - cpu if cpu is not None and after is not None else None}


def write_csv(args: dict[str, Any]) -> dict[str, Any]:
    """A CSV of member ids as a spreadsheet exports it: header, shuffled, CRLF."""
    import random

    with psycopg.connect(args["conninfo"]) as conn:
        ids = [r[0] for r in conn.execute("SELECT external_id FROM passes_master WHERE program_id = %s",
                                          (args["program_id"],))]
    random.Random(7).shuffle(ids)
    path = Path(args["path"])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(("member_id\r\n" + "\r\n".join(ids) + "\r\n").encode())
    return {"ids": len(ids), "bytes": path.stat().st_size}


def plan(args: dict[str, Any]) -> dict[str, Any]:
    """The plan_batches task: confirmation, PassKit credentials check, the list of batches."""
    import passpush.passkit.hook  # noqa: F401 - a task process has Airflow loaded already: time the work only
    from passpush import tasks

    started = time.monotonic()
    batches = tasks.plan_batches(args["campaign_id"], conninfo=args["conninfo"])
    return {"seconds": time.monotonic() - started, "batches": len(batches)}


def _settings(args: dict[str, Any]) -> Any:
    from passpush.passkit import PassKitSettings

    extra = {"max_connections": args["max_connections"]} if args.get("max_connections") else {}
    return PassKitSettings(base_url=args["url"], api_key=args["api_key"], api_secret=args["api_secret"],
                           metadata_update=args["metadata_update"], **extra)


def engine(args: dict[str, Any]) -> dict[str, Any]:
    """Send every batch of a resolved campaign with the engine alone (no Airflow)."""
    from passpush import sending

    url, campaign_id = args["conninfo"], args["campaign_id"]
    with psycopg.connect(url) as conn:
        batches = [r[0] for r in conn.execute(
            "SELECT DISTINCT batch_no FROM push_campaign_recipients WHERE campaign_id = %s"
            " AND batch_no IS NOT NULL ORDER BY 1", (campaign_id,))]
    settings, options = _settings(args), sending.SendOptions(rate_limit_per_second=args["rate"])
    sent = requests = 0
    cpu, started = time.process_time(), time.monotonic()
    for batch in batches:
        summary = sending.send_batch(url, campaign_id, batch, settings, options)
        sent, requests = sent + summary.sent, requests + summary.requests
    return {"sent": sent, "attempts": requests, "batches": len(batches),
            "seconds": time.monotonic() - started, "engine_cpu_seconds": time.process_time() - cpu}


def campaign_inprocess(args: dict[str, Any]) -> dict[str, Any]:
    """The DAG's task functions in order, without Airflow (the smoke test's runner)."""
    from passpush import tasks

    url = args["conninfo"]
    started, wall = time.monotonic(), time.time()
    campaign_id = tasks.create_campaign(args["conf"], dag_id="bench_inprocess", run_id=str(uuid.uuid4()),
                                        conninfo=url)
    tasks.resolve_audience(campaign_id, conninfo=url)
    for batch in tasks.plan_batches(campaign_id, conninfo=url):
        tasks.send_batch(campaign_id, batch, conninfo=url)
    result = tasks.reconcile(campaign_id, conninfo=url)
    return {"campaign_id": campaign_id, "seconds": time.monotonic() - started, "status": result["status"],
            "started": wall, "ended": time.time()}


def baseline(args: dict[str, Any]) -> dict[str, Any]:
    from bench.baseline import run_naive

    return run_naive(args)


INSERT_FLOOR_SQL = """
INSERT INTO push_campaign_recipients
    (campaign_id, member_id, pass_id, passkit_id, wallet, batch_no, rendered_message, status, timezone,
     points_at_resolve)
SELECT %(campaign_id)s, p.external_id, p.id, p.passkit_internal_id, p.wallet,
       ((row_number() OVER (ORDER BY p.external_id) - 1) / 1000)::int, 'a rendered message', 'PENDING', 'UTC',
       p.points_balance
FROM passes_master p WHERE p.program_id = %(program_id)s
"""


def insert_floor(args: dict[str, Any]) -> dict[str, Any]:
    """What writing the recipient rows alone costs (no join, no suppression), rolled back."""
    with psycopg.connect(args["conninfo"]) as conn:
        row = conn.execute("INSERT INTO push_campaigns (id, program_id, name, message_text)"
                           " VALUES (passpush_new_campaign_id(), %s, 'floor', 'x')"
                           " RETURNING id", (args["program_id"],)).fetchone()
        assert row is not None
        cpu, started = backend_cpu_seconds(conn), time.monotonic()
        rows = conn.execute(INSERT_FLOOR_SQL, {"campaign_id": row[0], "program_id": args["program_id"]}).rowcount
        seconds, after = time.monotonic() - started, backend_cpu_seconds(conn)
        conn.rollback()
    return {"rows": rows, "seconds": seconds,
            "db_cpu_seconds": after - cpu if cpu is not None and after is not None else None}


STEPS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    f.__name__: f for f in (seed, history, resolve, write_csv, plan, engine, campaign_inprocess, baseline,
                            insert_floor)
}


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if len(argv) != 1 or argv[0] not in STEPS:
        print(f"usage: python -m bench.steps {{{','.join(STEPS)}}} < args.json", file=sys.stderr)
        return 2
    result = STEPS[argv[0]](json.loads(sys.stdin.read() or "{}"))
    print(RESULT_PREFIX + json.dumps(result, default=str), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
