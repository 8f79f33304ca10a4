"""Scenario 3 in-process, and its growth (scenario 6): the sending engine alone, no Airflow.

The emulator is unthrottled with 20 ms latency; passpush's limiter is set to 5,000/s (the highest rate a
campaign may ask for), so it never waits. ``sending.send_batch`` is called for every batch of a resolved
campaign in a child process; its CPU time (``time.process_time``, engine only) divided by the sends is
the engine's cost per send. The emulator's own CPU time is read from ``/proc`` to show how the two
cores were shared.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import config
from bench.report import Figure
from bench.stack import emulator, step

DEFAULT_CONNECTIONS = 128  # PassKitSettings.max_connections
PREVIOUS_CONNECTIONS = 64  # the default until it proved to bound read_modify_write: run side by side


@dataclass
class EngineRun:
    size: int
    mode: str
    connections: int
    sent: int
    seconds: float
    engine_cpu_seconds: float
    emulator_cpu_seconds: float | None
    peak_rss_mb: float

    @property
    def sends_per_second(self) -> float:
        return self.sent / self.seconds if self.seconds else 0.0

    @property
    def cpu_us_per_send(self) -> float:
        return self.engine_cpu_seconds / self.sent * 1e6 if self.sent else float("nan")


def _process_cpu(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_engine(conninfo: str, log_dir: Path, size: int, mode: str, seed: int,
               connections: int = DEFAULT_CONNECTIONS) -> EngineRun:
    label = f"engine-{mode}-{size}-{connections}"
    emu = emulator(log_dir, label, latency_ms_min=config.ENGINE_LATENCY_MS[0],
                   latency_ms_max=config.ENGINE_LATENCY_MS[1])
    try:
        program = step("seed", {"conninfo": conninfo, "members": size, "seed": seed, "emulator_url": emu.url},
                       log_dir, f"seed-{label}").result
        conf = {"program_id": program["program_id"], "name": label, "message": config.MESSAGE,
                "dry_run": False, "batch_size": 5000}
        campaign = step("resolve", {"conninfo": conninfo, "conf": conf}, log_dir, f"resolve-{label}").result
        before = _process_cpu(emu.process.pid)
        sent = step("engine", {"conninfo": conninfo, "campaign_id": campaign["campaign_id"], "url": emu.url,
                               "api_key": emu.api_key, "api_secret": emu.api_secret, "metadata_update": mode,
                               "rate": config.UNTHROTTLED_RATE, "max_connections": connections},
                      log_dir, label, timeout=max(120.0, size / 300))
        after = _process_cpu(emu.process.pid)
        if not emu.running():
            raise RuntimeError(f"the emulator exited during the run; see {emu.log_path}")
    finally:
        emu.stop()
    r = sent.result
    emulator_cpu = after - before if before is not None and after is not None else None
    return EngineRun(size, mode, connections, r["sent"], r["seconds"], r["engine_cpu_seconds"], emulator_cpu,
                     sent.peak_rss_mb)


def engine_figures(runs: list[EngineRun]) -> list[Figure]:
    figures = []
    for run in runs:
        label = f"{run.mode}, {run.size:,}, {run.connections} connections"
        per_request = 2 if run.mode == "read_modify_write" else 1
        ceiling = run.connections / (config.ENGINE_LATENCY_MS[0] / 1000) / per_request
        emulator_note = (f"; emulator {run.emulator_cpu_seconds / max(run.sent, 1) * 1e6:.0f} us/send"
                         if run.emulator_cpu_seconds is not None else "")
        figures += [
            Figure("3 engine", f"engine alone sends/s, {label}", run.sends_per_second, "sends/s",
                   note=f"{run.sends_per_second * per_request:.0f} req/s; {run.seconds:.1f} s; ceiling "
                        f"{ceiling:,.0f} sends/s = connections / latency / requests per send"),
            Figure("3 engine", f"engine CPU per send, {label}", run.cpu_us_per_send, "us",
                   note=f"{run.cpu_us_per_send / per_request:.0f} us per request{emulator_note}"),
        ]
    return figures


def growth_figures(runs: list[EngineRun]) -> list[Figure]:
    """One line per size: time, time per 1,000 sends, CPU per send, peak memory."""
    return [Figure("6 growth", f"engine {run.mode} {run.size:,}: time", run.seconds, "s",
                   note=f"{run.seconds / run.size * 1000:.2f} s per 1k sends; {run.cpu_us_per_send:.0f} us CPU/send;"
                        f" peak {run.peak_rss_mb:.0f} MB")
            for run in runs]


def details(runs: list[EngineRun]) -> list[dict[str, Any]]:
    return [{**run.__dict__, "sends_per_second": run.sends_per_second, "cpu_us_per_send": run.cpu_us_per_send}
            for run in runs]
