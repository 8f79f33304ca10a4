"""Before starting anything: are PostgreSQL and Redis reachable, and are our ports free?"""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

import psycopg
from psycopg.conninfo import conninfo_to_dict

from passpush.cluster.errors import ClusterError

POSTGRES_HINT = ("start it (Debian: pg_ctlcluster --skip-systemctl-redirect 15 main start) "
                 "or point PASSPUSH_CLUSTER_POSTGRES_URL at one")
REDIS_HINT = ("start it (redis-server --daemonize yes --bind 127.0.0.1 --port 6379) "
              "or point PASSPUSH_CLUSTER_REDIS_URL at one")


def _where(conninfo: str) -> str:
    params = conninfo_to_dict(conninfo)
    return f"{params.get('host') or 'localhost'}:{params.get('port') or 5432}"


def check_postgres(conninfo: str, timeout: int = 3) -> None:
    """Connect once; ClusterError naming the server and the fix when it does not answer."""
    try:
        with psycopg.connect(conninfo, connect_timeout=timeout) as conn:
            conn.execute("SELECT 1")
    except psycopg.OperationalError as err:
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ClusterError(f"PostgreSQL is not reachable at {_where(conninfo)} ({first_line}): "
                           f"{POSTGRES_HINT}") from err


def check_redis(url: str, timeout: float = 3.0) -> None:
    """PING the broker; ClusterError naming it and the fix when it does not answer."""
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
    try:
        client.ping()
    except redis.exceptions.RedisError as err:
        where = urlsplit(url).netloc.rsplit("@", 1)[-1] or url
        raise ClusterError(f"Redis is not reachable at {where} ({err}): {REDIS_HINT}") from err
    finally:
        client.close()


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def check_ports_free(ports: dict[str, int]) -> None:
    """ClusterError listing which of our services' ports something else already listens on."""
    taken = [f"{name} port {port}" for name, port in ports.items() if port_in_use(port)]
    if taken:
        raise ClusterError(f"already in use on 127.0.0.1: {', '.join(taken)}; stop what listens there or "
                           "choose other ports (PASSPUSH_CLUSTER_API_PORT, PASSPUSH_CLUSTER_EMULATOR_PORT)")
