"""Synchronous client for the emulator's ``/_emulator/`` endpoints, and a launcher.

``start_emulator()`` runs ``python -m passpush.emulator`` as a subprocess, so the server has its own
process (its own core and GIL) and a benchmark measures the product, not the emulator::

    with start_emulator(rate_limit_per_second=50) as emu:
        emu.control.create_program(program_id="prog-1", template={"meta.marketingMessage": "%@"})
        ids = emu.control.bulk_enrol({"externalId": f"C{i}", "programId": "prog-1", "tierId": "base"}
                                     for i in range(1000))
        ...  # point the PassKit client at emu.url, authenticate with emu.token()
        assert emu.control.notification_summary("prog-1")["max_per_member"] <= 1

Errors: ``EmulatorError`` (a control call answered an error, or the launcher could not start the
server; the message names the URL, the status and the emulator's own error text).

Only the standard library is used for HTTP, so any test or script can import this module.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any

from passpush.emulator.state import Settings, SettingsError

READY_PATTERN = re.compile(r"PassKit emulator listening on (http://\S+)")
DEFAULT_API_KEY = Settings.api_key
DEFAULT_API_SECRET = Settings.api_secret


class EmulatorError(RuntimeError):
    """A control call failed or the emulator did not start."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def make_jwt(api_key: str = DEFAULT_API_KEY, api_secret: str = DEFAULT_API_SECRET,
             lifetime_seconds: float = 3600.0, iat_offset_seconds: float = -5.0,
             now: float | None = None) -> str:
    """A PassKit-style HS256 token ``{"uid", "iat", "exp"}``; iat back-dated a little against skew."""
    import jwt  # only the callers that mint tokens pay for the import

    now = time.time() if now is None else now
    claims = {"uid": api_key, "iat": int(now + iat_offset_seconds), "exp": int(now + lifetime_seconds)}
    return jwt.encode(claims, api_secret, algorithm="HS256")


class EmulatorControl:
    """Blocking client for the control endpoints of one emulator at ``base_url``."""

    def __init__(self, base_url: str, timeout: float = 60.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"EmulatorControl({self.base_url!r})"

    # ---- transport -----------------------------------------------------------------------------

    def _call(self, method: str, path: str, payload: Any = None, *, raw: bytes | None = None,
              content_type: str = "application/json", query: Mapping[str, Any] | None = None) -> Any:
        url = f"{self.base_url}/_emulator/{path}"
        params = {k: v for k, v in (query or {}).items() if v is not None}
        if params:
            url += "?" + urllib.parse.urlencode(params)
        data = raw if raw is not None else (None if payload is None else json.dumps(payload).encode())
        request = urllib.request.Request(url, data=data, method=method,
                                         headers={"Content-Type": content_type} if data is not None else {})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as err:
            detail = err.read().decode(errors="replace")
            raise EmulatorError(f"{method} {url} answered {err.code}: {detail}", err.code) from err
        except (urllib.error.URLError, OSError) as err:
            raise EmulatorError(f"{method} {url} failed: {err}; is the emulator running?") from err

    # ---- endpoints -----------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        return self._call("GET", "health")

    def wait_until_healthy(self, timeout: float = 15.0) -> dict[str, Any]:
        """Poll ``/_emulator/health`` until it answers; EmulatorError after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.health()
            except EmulatorError as err:
                if time.monotonic() >= deadline:
                    message = f"emulator at {self.base_url} not healthy after {timeout}s: {err}"
                    raise EmulatorError(message) from err
                time.sleep(0.05)

    def config(self) -> dict[str, Any]:
        """Current settings (api_secret shown as "***") plus burst and clock state."""
        return self._call("GET", "config")

    def configure(self, **settings: Any) -> dict[str, Any]:
        """Change some settings (names as in ``Settings``); returns the full new config."""
        return self._call("PUT", "config", settings)

    def reset(self, config: bool = False) -> None:
        """Forget members, programs, notifications, stats and clock offset; ``config`` restores the
        settings the emulator was launched with."""
        self._call("POST", "reset", {"config": config})

    def create_program(self, program_id: str | None = None, name: str | None = None,
                       template: Mapping[str, str] | None = None) -> dict[str, Any]:
        """Create or replace a program; ``template`` maps pass field names to changeMessages."""
        body: dict[str, Any] = {"id": program_id, "name": name}
        if template is not None:
            body["template"] = dict(template)
        return self._call("POST", "programs", {k: v for k, v in body.items() if v is not None})

    def programs(self) -> list[dict[str, Any]]:
        return self._call("GET", "programs")["programs"]

    def bulk_enrol(self, members: Iterable[Mapping[str, Any]], chunk_size: int = 20_000) -> list[str]:
        """Enrol members fast (no auth, no faults), streamed in NDJSON chunks; ids in input order.

        Each member: ``{id?, externalId, programId, tierId, points, metaData, person, wallet, status}``.
        """
        ids: list[str] = []
        iterator = iter(members)
        # One chunk in flight while the next is serialised: the server parses as we encode.
        with ThreadPoolExecutor(max_workers=1) as sender:
            pending: Future[Any] | None = None
            while chunk := list(itertools.islice(iterator, chunk_size)):
                body = "\n".join(json.dumps(member, separators=(",", ":")) for member in chunk).encode()
                if pending is not None:
                    ids.extend(pending.result()["ids"])
                pending = sender.submit(self._call, "POST", "members/bulk", raw=body,
                                        content_type="application/x-ndjson")
            if pending is not None:
                ids.extend(pending.result()["ids"])
        return ids

    def member(self, pass_id: str) -> dict[str, Any]:
        """A member as PassKit shows it, plus ``wallet`` and ``googleUpdatesInWindow``."""
        return self._call("GET", f"members/{urllib.parse.quote(pass_id, safe='')}")

    def stats(self) -> dict[str, Any]:
        return self._call("GET", "stats")

    def notifications(self, *, kind: str = "notification", external_id: str | None = None,
                      pass_id: str | None = None, program_id: str | None = None,
                      limit: int | None = None) -> list[dict[str, Any]]:
        """Recorded wallet events; ``kind`` is notification, silent, quota_exceeded or all."""
        query = {"kind": kind, "externalId": external_id, "passId": pass_id, "programId": program_id,
                 "limit": limit}
        return self._call("GET", "notifications", query=query)["notifications"]

    def notification_summary(self, program_id: str | None = None) -> dict[str, Any]:
        """``{"total", "members", "max_per_member", "members_over_1", "per_member_over_1"}``."""
        return self._call("GET", "notifications/summary", query={"programId": program_id})

    def request_log(self, limit: int = 100) -> list[dict[str, Any]]:
        return self._call("GET", "requests/log", query={"limit": limit})["requests"]

    def advance_clock(self, seconds: float) -> dict[str, Any]:
        """Move the emulator clock (timestamps, Google's 24 h window); JWTs keep real time."""
        return self._call("POST", "clock", {"advance_seconds": seconds})


class EmulatorProcess:
    """A running emulator subprocess: ``.url``, ``.control``, ``.token()``, ``.log_path``, ``.stop()``."""

    def __init__(self, process: subprocess.Popen[bytes], url: str, log_path: Path,
                 settings: Settings) -> None:
        self.process = process
        self.url = url
        self.log_path = log_path
        self.settings = settings
        self.control = EmulatorControl(url)

    def __repr__(self) -> str:
        return f"EmulatorProcess(url={self.url!r}, pid={self.process.pid}, log={str(self.log_path)!r})"

    @property
    def api_key(self) -> str:
        return self.settings.api_key

    @property
    def api_secret(self) -> str:
        return self.settings.api_secret

    def token(self, lifetime_seconds: float = 3600.0) -> str:
        """A valid token for the launch credentials."""
        return make_jwt(self.api_key, self.api_secret, lifetime_seconds)

    def running(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM, then SIGKILL if it has not exited within ``timeout`` seconds."""
        if self.running():
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)

    def __enter__(self) -> EmulatorProcess:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def start_emulator(port: int | None = None, *, host: str = "127.0.0.1", log_path: str | Path | None = None,
                   startup_timeout: float = 20.0, uvloop: bool = True, **settings: Any) -> EmulatorProcess:
    """Spawn ``python -m passpush.emulator`` and wait until it is healthy.

    ``port`` None lets the OS pick a free port (read back from the ready line). ``settings`` are
    emulator settings (see ``passpush.emulator.state.Settings``), checked here before spawning and
    passed through the environment so the secret is not visible in the process list.
    """
    try:
        launch = Settings().updated(settings)
    except SettingsError as err:
        raise EmulatorError(f"cannot start the emulator: {err}") from err
    if log_path is None:
        handle, name = tempfile.mkstemp(prefix="passkit-emulator-", suffix=".log")
        os.close(handle)
        log_path = name
    log_path = Path(log_path)
    command = [sys.executable, "-m", "passpush.emulator", "--host", host, "--port", str(port or 0)]
    if not uvloop:
        command.append("--no-uvloop")
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PASSKIT_EMULATOR_CONFIG_JSON": json.dumps(settings)}
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, env=env)
    try:
        url = _wait_for_ready_line(process, log_path, startup_timeout)
        emulator = EmulatorProcess(process, url, log_path, launch)
        emulator.control.wait_until_healthy(max(1.0, startup_timeout))
    except BaseException:
        process.kill()
        process.wait()
        raise
    return emulator


def _wait_for_ready_line(process: subprocess.Popen[bytes], log_path: Path, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = READY_PATTERN.search(log_path.read_text(errors="replace"))
        if found:
            return found.group(1)
        if process.poll() is not None:
            raise EmulatorError(f"emulator exited with code {process.returncode} before listening; "
                                f"log {log_path}:\n{_tail(log_path)}")
        time.sleep(0.02)
    raise EmulatorError(f"emulator did not print its ready line within {timeout}s; log {log_path}:\n"
                        f"{_tail(log_path)}")


def _tail(path: Path, lines: int = 20) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
