"""What the scenarios run on: a scratch database, emulators, child processes and the machine.

Heavy work runs in child processes (``python -m bench.steps``) so that each one's wall time, CPU
time and peak memory are its own: ``os.wait4`` returns the child's resource usage, which is exact
where polling ``/proc`` would miss the last moments.
"""

from __future__ import annotations

import json
import os
import platform
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from passpush.db.migrations import apply_migrations
from passpush.emulator.control import EmulatorProcess, start_emulator
from passpush.paths import PROJECT_ROOT, STATE_DIR

BENCH_DIR = Path(__file__).resolve().parent
OUT_DIR = BENCH_DIR / "out"
DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"
RESULT_PREFIX = "BENCH-RESULT "


@dataclass(frozen=True)
class ChildResult:
    returncode: int
    wall_seconds: float
    cpu_seconds: float
    peak_rss_mb: float
    result: dict[str, Any]
    log_path: Path


def _server_reachable(server: str) -> bool:
    try:
        with psycopg.connect(server, connect_timeout=3):
            return True
    except psycopg.OperationalError:
        return False


def _with_dbname(conninfo: str, dbname: str) -> str:
    params = conninfo_to_dict(conninfo)
    params["dbname"] = dbname
    return make_conninfo(**params)


def _server_conninfo(server: str | None) -> str:
    """The admin conninfo: the given server, else 127.0.0.1:5432, else the embedded one."""
    candidate = server or os.environ.get("PASSPUSH_BENCH_SERVER") or DEFAULT_SERVER
    if _server_reachable(candidate):
        return candidate
    from passpush.db.embedded import start_embedded

    return start_embedded(STATE_DIR / "pgdata", database="postgres")


@contextmanager
def scratch_database(name: str, server: str | None = None, keep: bool = False) -> Iterator[str]:
    """Create (fresh) and migrate database ``name``; drop it afterwards unless ``keep``."""
    admin = _server_conninfo(server)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = _with_dbname(admin, name)
    apply_migrations(url)
    try:
        yield url
    finally:
        if not keep:
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def emulator(log_dir: Path, name: str, **settings: Any) -> EmulatorProcess:
    """A fresh emulator in its own process; request log large enough for every request of a run."""
    settings.setdefault("request_log_size", 0)
    settings.setdefault("seed", 6)
    return start_emulator(log_path=log_dir / f"emulator-{name}.log", **settings)


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


def run_child(argv: list[str], log_path: Path, *, env: dict[str, str] | None = None,
              stdin: dict[str, Any] | None = None, timeout: float = 1800.0) -> ChildResult:
    """Run ``argv`` in its own session; its output goes to ``log_path``; wait4 gives its usage."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with log_path.open("wb") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.PIPE,
                                   env={**os.environ, **(env or {})}, cwd=PROJECT_ROOT,
                                   start_new_session=True)
        timer = threading.Timer(timeout, _kill_group, (process,))
        timer.start()
        try:
            assert process.stdin is not None
            process.stdin.write(json.dumps(stdin or {}).encode())
            process.stdin.close()
            _, status, usage = os.wait4(process.pid, 0)
        finally:
            timer.cancel()
    process.returncode = os.waitstatus_to_exitcode(status)
    return ChildResult(process.returncode, time.monotonic() - started, usage.ru_utime + usage.ru_stime,
                       usage.ru_maxrss / 1024.0, _result_of(log_path), log_path)


def _result_of(log_path: Path) -> dict[str, Any]:
    for line in reversed(log_path.read_text(errors="replace").splitlines()):
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX):])
    return {}


class StepTimeout(RuntimeError):
    """A step ran past its time-out and was stopped."""

    def __init__(self, message: str, seconds: float, peak_rss_mb: float) -> None:
        super().__init__(message)
        self.seconds = seconds
        self.peak_rss_mb = peak_rss_mb


def step(name: str, args: dict[str, Any], log_dir: Path, label: str, *,
         env: dict[str, str] | None = None, timeout: float = 1800.0) -> ChildResult:
    """Run one ``bench.steps`` function in a child process; raise if it failed."""
    result = run_child([sys.executable, "-m", "bench.steps", name], log_dir / f"{label}.log",
                       env=env, stdin=args, timeout=timeout)
    if result.returncode == -signal.SIGKILL and result.wall_seconds >= timeout:
        raise StepTimeout(f"bench step {name} ({label}) stopped after {timeout:.0f} s", result.wall_seconds,
                          result.peak_rss_mb)
    if result.returncode != 0 or not result.result:
        raise RuntimeError(f"bench step {name} ({label}) failed with exit code {result.returncode}; "
                           f"see {result.log_path}")
    return result


def cancel_queries(conninfo: str) -> None:
    """Cancel what other sessions still run in this (scratch) database: a killed client's query goes on."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE datname = current_database()"
                     " AND pid <> pg_backend_pid() AND state = 'active'")


def backend_cpu_seconds(conn: psycopg.Connection) -> float | None:
    """CPU seconds used so far by this connection's server process (local servers only)."""
    pid = conn.execute("SELECT pg_backend_pid()").fetchone()
    try:
        fields = Path(f"/proc/{pid[0] if pid else 0}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gb() -> float:
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return 0.0
    return round(pages / 2**30, 1)


def cpu_check(steps: int = 2_000_000, repeats: int = 3) -> float:
    """Nanoseconds per step of a fixed pure-Python loop, best of ``repeats``: lower is faster.

    The same machine type has been seen to run the same code 3x slower from one hour to the next
    (engine CPU per send 192 us, then 685 us): this number, taken at the start and the end of a run,
    is what makes tables from different runs comparable.
    """
    best = float("inf")
    for _ in range(repeats):
        started, total = time.perf_counter(), 0
        for i in range(steps):
            total += i
        best = min(best, time.perf_counter() - started)
    return round(best / steps * 1e9, 1)


def machine(conninfo: str) -> dict[str, Any]:
    """The machine a run measured, and what else was running (load average)."""
    from importlib.metadata import version

    with psycopg.connect(conninfo) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    return {
        "cpu": _cpu_model(), "cores": os.cpu_count(), "memory_gb": _memory_gb(),
        "os": f"{platform.system()} {platform.release()}", "python": platform.python_version(),
        "postgresql": row[0] if row else "?", "airflow": version("apache-airflow"),
        "aiohttp": version("aiohttp"), "psycopg": version("psycopg"),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "cpu_check_ns_at_start": cpu_check(),
    }
