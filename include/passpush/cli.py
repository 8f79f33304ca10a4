"""``passpush`` command line: local stack helpers behind the Makefile targets.

    passpush demo                 one campaign end to end (make demo)
    passpush airflow              Airflow standalone with the local stack (make airflow)
    passpush migrate [--url U]    apply sql/migrations to a database
    passpush seed --members N     seed a synthetic program (and the emulator when --emulator-url)
    passpush lift CAMPAIGN_ID     compute, store and print a campaign's lift report
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from passpush import localdev
from passpush.paths import STATE_DIR

EMULATOR_PORT = 8765


def _migrate(args: argparse.Namespace) -> int:
    from passpush.db.migrations import apply_migrations

    url = args.url or os.environ.get("PASSPUSH_DATABASE_URL") or localdev.local_database()
    applied = apply_migrations(url)
    print(f"applied: {', '.join(applied) if applied else 'nothing, up to date'}")
    return 0


def _seed(args: argparse.Namespace) -> int:
    from passpush.emulator.control import EmulatorControl
    from passpush.seed import SeedSpec, seed_program

    url = args.url or localdev.local_database()
    control = EmulatorControl(args.emulator_url) if args.emulator_url else None
    program = seed_program(url, SeedSpec(members=args.members, seed=args.seed), control)
    print(program)
    return 0


def _ensure_program(conninfo: str, emulator_url: str) -> str:
    """The newest program, or a seeded demo one, so the trigger form has a working default."""
    import psycopg

    from passpush.emulator.control import EmulatorControl
    from passpush.seed import SeedSpec, enrol_existing, seed_program

    with psycopg.connect(conninfo) as conn:
        row = conn.execute("SELECT id::text FROM programs ORDER BY created_at DESC LIMIT 1").fetchone()
    if row:
        # The emulator keeps members in memory: a fresh one must learn the program's passes again.
        enrol_existing(conninfo, row[0], EmulatorControl(emulator_url))
        return row[0]
    return seed_program(conninfo, SeedSpec(members=5000, seed=7), EmulatorControl(emulator_url)).program_id


def _airflow(args: argparse.Namespace) -> int:
    from passpush.emulator.control import start_emulator

    conninfo = localdev.local_database()
    emulator = start_emulator(port=args.emulator_port, log_path=STATE_DIR / "emulator.log",
                              latency_ms_min=20, latency_ms_max=80)
    try:
        program_id = _ensure_program(conninfo, emulator.url)
        passkit = localdev.passkit_connection_json(emulator.url, emulator.api_key, emulator.api_secret,
                                                   rate_limit_per_second=200)
        env = localdev.airflow_env(conninfo, passkit)
        env["PASSPUSH_DEFAULT_PROGRAM_ID"] = program_id
        localdev.prepare_airflow(env)
        passwords = STATE_DIR / "airflow" / "simple_auth_manager_passwords.json.generated"
        print(f"PassKit emulator: {emulator.url} (inspect: {emulator.url}/_emulator/stats)")
        print(f"Program for the form's default: {program_id}")
        print(f"Airflow UI: http://localhost:8080  user 'admin', password in {passwords}")
        localdev.airflow_command(["standalone"], {**env, "AIRFLOW__API__PORT": "8080",
                                                  "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin"},
                                 check=False)
    finally:
        emulator.stop()
    return 0


def _lift(args: argparse.Namespace) -> int:
    import psycopg

    from passpush.errors import PassPushError
    from passpush.lift import compute_lift

    with psycopg.connect(args.url or localdev.local_database()) as conn:
        try:
            print(compute_lift(conn, args.campaign_id, window_days=args.window_days).format())
        except PassPushError as err:  # an unknown campaign, or a window not yet ended: a message, not a traceback
            print(f"passpush lift: {err}", file=sys.stderr)
            return 2
    return 0


def _demo(args: argparse.Namespace) -> int:
    from passpush import demo

    return demo.run(members=args.members)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(prog="passpush", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("demo", help="one campaign end to end")
    p.add_argument("--members", type=int, default=5000)
    p.set_defaults(func=_demo)
    p = sub.add_parser("airflow", help="Airflow standalone with the local stack")
    p.add_argument("--emulator-port", type=int, default=EMULATOR_PORT)
    p.set_defaults(func=_airflow)
    p = sub.add_parser("migrate", help="apply SQL migrations")
    p.add_argument("--url")
    p.set_defaults(func=_migrate)
    p = sub.add_parser("seed", help="seed a synthetic program")
    p.add_argument("--url")
    p.add_argument("--members", type=int, default=5000)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--emulator-url")
    p.set_defaults(func=_seed)
    p = sub.add_parser("lift", help="lift report of a campaign with a holdout group")
    p.add_argument("campaign_id")
    p.add_argument("--window-days", type=int, default=7)
    p.add_argument("--url")
    p.set_defaults(func=_lift)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
