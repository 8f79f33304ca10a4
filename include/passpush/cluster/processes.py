"""Background processes with a pid file and a log each, stopped with their whole process tree.

A service's environment is this process's, less any Airflow or passpush setting (``AIRFLOW_*``,
``PASSPUSH_*``), plus its own: a shell or test session configured for another Airflow cannot leak
into the cluster. Every service runs in a session of its own (so a Ctrl-C in the terminal that ran ``up`` does not
reach it) and is recorded in ``pids/<name>.json`` with its start time, so a pid reused by another
program after a reboot is never signalled. Stopping collects the process tree first: Airflow's task
processes put themselves in process groups of their own, so signalling the worker's group alone
would leave them running.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import psutil

log = logging.getLogger(__name__)

FOREIGN_SETTINGS = ("AIRFLOW_", "AIRFLOW__", "PASSPUSH_", "PASSKIT_EMULATOR_")


def isolated_environ(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` on top of this process's environment without its Airflow / passpush settings."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(FOREIGN_SETTINGS)}
    return {**base, **env}


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    argv: Sequence[str]
    env: Mapping[str, str] = field(default_factory=dict)


class ProcessManager:
    """Start, find and stop the services whose pid files live in ``state_dir/pids``."""

    def __init__(self, state_dir: Path, cwd: Path | None = None) -> None:
        self.pids_dir = state_dir / "pids"
        self.logs_dir = state_dir / "logs"
        self.cwd = cwd

    def log_path(self, name: str) -> Path:
        return self.logs_dir / f"{name}.log"

    def _pid_file(self, name: str) -> Path:
        return self.pids_dir / f"{name}.json"

    def names(self) -> list[str]:
        return sorted(p.stem for p in self.pids_dir.glob("*.json")) if self.pids_dir.exists() else []

    def process(self, name: str) -> psutil.Process | None:
        """The live process recorded for ``name``, or None (no pid file, exited, or pid reused)."""
        path = self._pid_file(name)
        if not path.exists():
            return None
        record = json.loads(path.read_text())
        try:
            proc = psutil.Process(record["pid"])
            if abs(proc.create_time() - record["create_time"]) > 1.0 or proc.status() == psutil.STATUS_ZOMBIE:
                return None
        except psutil.Error:
            return None
        return proc

    def running(self, name: str) -> bool:
        return self.process(name) is not None

    def start(self, spec: ServiceSpec) -> int:
        """Start ``spec`` unless it already runs; returns its pid."""
        existing = self.process(spec.name)
        if existing is not None:
            return existing.pid
        self.pids_dir.mkdir(parents=True, exist_ok=True)
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_path(spec.name)
        with log_path.open("ab") as handle:
            handle.write(f"\n=== {datetime.now(UTC).isoformat()} starting {spec.name}\n".encode())
            handle.flush()
            proc = subprocess.Popen(list(spec.argv), stdout=handle, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, env=isolated_environ(spec.env),
                                    cwd=self.cwd, start_new_session=True)
        record = {"pid": proc.pid, "create_time": psutil.Process(proc.pid).create_time(),
                  "argv": list(spec.argv)}
        self._pid_file(spec.name).write_text(json.dumps(record))
        log.info("started %s (pid %d), log %s", spec.name, proc.pid, log_path)
        return proc.pid

    def stop(self, names: Sequence[str], timeout: float = 15.0) -> list[str]:
        """SIGTERM the services, SIGKILL what is left of their trees after ``timeout``; the names stopped."""
        found = {name: proc for name in names if (proc := self._take(name)) is not None}
        trees = [p for proc in found.values() for p in _tree(proc)]
        _signal_all(list(found.values()), signal.SIGTERM)
        _wait_gone(list(found.values()), timeout)
        _signal_all([p for p in trees if _alive(p)], signal.SIGKILL)  # task processes, pool children
        _wait_gone(trees, 5.0)
        for name, proc in found.items():
            log.info("stopped %s (pid %d)", name, proc.pid)
        return list(found)

    def kill(self, name: str) -> bool:
        """SIGKILL the service and every process under it at once: a crash, not a shutdown."""
        proc = self._take(name)
        if proc is None:
            return False
        tree = _tree(proc)
        _signal_all(tree, signal.SIGKILL)
        _wait_gone(tree, 5.0)
        log.info("killed %s (pid %d) and %d processes under it", name, proc.pid, len(tree) - 1)
        return True

    def _take(self, name: str) -> psutil.Process | None:
        """The live process of ``name``, forgetting its pid file either way."""
        proc = self.process(name)
        self._pid_file(name).unlink(missing_ok=True)
        return proc


def _alive(proc: psutil.Process) -> bool:
    """Running and not a zombie (an orphan's zombie may never be reaped in a container)."""
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _wait_gone(procs: Sequence[psutil.Process], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while any(_alive(p) for p in procs) and time.monotonic() < deadline:
        time.sleep(0.1)


def _tree(proc: psutil.Process) -> list[psutil.Process]:
    try:
        return [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return [proc]


def _signal_all(procs: Sequence[psutil.Process], sig: signal.Signals) -> None:
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess):  # already gone: that is what we want
            proc.send_signal(sig)


def wait_until(predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.5) -> None:
    """Poll ``predicate()`` until true; TimeoutError naming ``what`` otherwise."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what} not ready after {timeout:.0f}s")
        time.sleep(interval)


def tail(path: Path, lines: int = 30) -> str:
    if not path.exists():
        return f"({path} does not exist)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
