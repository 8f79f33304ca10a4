"""Command line of the cluster.

    up          start the local Celery cluster (what is not running yet), provisioned and ready
    down        stop it (idempotent); --drop-databases also drops its two databases
    status      which services run, their pids and logs
    provision   set up an Airflow deployment for passpush: loyalty database and migrations,
                metadata migration, pool, connections (compose's airflow-init runs this)

``up`` reads ``PASSPUSH_CLUSTER_*`` variables (STATE_DIR, POSTGRES_URL, REDIS_URL, API_PORT,
EMULATOR_PORT, QUEUE, DEMO_MEMBERS); ``down`` and ``status`` use what ``up`` recorded.
``provision`` reads the PassKit credentials from the environment (PASSKIT_API_KEY and
PASSKIT_API_SECRET), never from the command line.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from passpush.cluster.config import from_env
from passpush.cluster.errors import ClusterError
from passpush.cluster.stack import Cluster


def _cluster(args: argparse.Namespace) -> Cluster:
    return Cluster(from_env(state_dir=Path(args.state_dir) if args.state_dir else None))


def _up(args: argparse.Namespace) -> int:
    cluster = _cluster(args)
    config = cluster.config
    cluster.up(timeout=args.timeout)
    _print_status(cluster)
    print(f"\nAirflow UI and REST API: {config.api_url}  (user {config.admin_user!r}, password in "
          f"{config.state_dir / 'secrets.json'} under admin_password)")
    print(f"PassKit emulator: {config.emulator_url}/_emulator/stats   logs: {config.logs_dir}")
    return 0


def _down(args: argparse.Namespace) -> int:
    cluster = _cluster(args)
    stopped = cluster.down()
    print(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")
    if args.drop_databases:
        cluster.drop_databases()
        print("dropped the metadata and loyalty databases")
    return 0


def _status(args: argparse.Namespace) -> int:
    cluster = _cluster(args)
    _print_status(cluster)
    return 0 if all(s.running for s in cluster.status()) else 3


def _print_status(cluster: Cluster) -> None:
    for service in cluster.status():
        state = f"running (pid {service.pid})" if service.running else "stopped"
        print(f"  {service.name:<14} {state:<22} {service.log}")


def _provision(args: argparse.Namespace) -> int:
    from passpush import localdev
    from passpush.cluster.provision import provision

    missing = [name for name in ("PASSKIT_API_KEY", "PASSKIT_API_SECRET") if not os.environ.get(name)]
    if not args.loyalty_url or missing:
        raise ClusterError("provision needs --loyalty-url (or PASSPUSH_DATABASE_URL) and the environment "
                           f"variables PASSKIT_API_KEY, PASSKIT_API_SECRET; missing: "
                           f"{', '.join(missing + ([] if args.loyalty_url else ['--loyalty-url']))}")
    passkit = localdev.passkit_connection_json(
        args.passkit_url, os.environ["PASSKIT_API_KEY"], os.environ["PASSKIT_API_SECRET"],
        rate_limit_per_second=args.rate_limit)
    provision(os.environ, args.loyalty_url, passkit, args.pool_slots,
              migrate_airflow=not args.skip_airflow_migrate)
    print("provisioned: loyalty database, Airflow metadata, pool passkit_api, connections")
    return 0


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="python -m passpush.cluster", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = root.add_subparsers(dest="command", required=True)
    p = sub.add_parser("up", help="start the local Celery cluster")
    p.add_argument("--state-dir", help="default: .state/cluster or PASSPUSH_CLUSTER_STATE_DIR")
    p.add_argument("--timeout", type=float, default=300, help="seconds to wait for readiness")
    p.set_defaults(func=_up)
    p = sub.add_parser("down", help="stop the local cluster (idempotent)")
    p.add_argument("--state-dir")
    p.add_argument("--drop-databases", action="store_true")
    p.set_defaults(func=_down)
    p = sub.add_parser("status", help="which services run")
    p.add_argument("--state-dir")
    p.set_defaults(func=_status)
    p = sub.add_parser("provision", help="set up a deployment: databases, migrations, pool, connections")
    p.add_argument("--loyalty-url", default=os.environ.get("PASSPUSH_DATABASE_URL"),
                   help="loyalty database conninfo (created if missing); default: PASSPUSH_DATABASE_URL")
    p.add_argument("--passkit-url", default=os.environ.get("PASSKIT_BASE_URL", "https://api.pub1.passkit.io"))
    p.add_argument("--rate-limit", type=float,
                   default=float(os.environ.get("PASSKIT_RATE_LIMIT_PER_SECOND", "50")),
                   help="PassKit requests per second, shared by every worker")
    p.add_argument("--pool-slots", type=int, default=int(os.environ.get("PASSPUSH_POOL_SLOTS", "4")))
    p.add_argument("--skip-airflow-migrate", action="store_true",
                   help="when the metadata database was migrated already (e.g. by the image's entrypoint)")
    p.set_defaults(func=_provision)
    return root


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ClusterError as err:
        print(f"error: {err}", file=sys.stderr)
        if args.command == "up" and any(s.running for s in _cluster(args).status()):
            print("what did start is still running: `make cluster-down` stops it", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
