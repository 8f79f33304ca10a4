"""Figures, the one table, its JSON, and the latest table in ``bench/RESULTS.md``."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

RESULTS_MD = Path(__file__).resolve().parent / "RESULTS.md"
LATEST_START = "<!-- bench:latest:start -->"
LATEST_END = "<!-- bench:latest:end -->"


@dataclass
class Figure:
    """One measured figure; ``op`` is ">=", "<=", "==" against ``target``, or "" for information."""

    scenario: str
    name: str
    measured: float | None
    unit: str = ""
    target: float | None = None
    op: str = ""
    note: str = ""

    def ratio(self) -> float | None:
        if self.measured is None or not self.target:
            return None
        return self.measured / self.target

    def verdict(self) -> str:
        if not self.op or self.target is None:
            return ""
        if self.measured is None or math.isnan(self.measured):
            return "n/a"
        ok = {">=": self.measured >= self.target, "<=": self.measured <= self.target,
              "==": self.measured == self.target}[self.op]
        return "met" if ok else "MISSED"

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ratio": self.ratio(), "verdict": self.verdict()}


def _number(value: float | None) -> str:
    if value is None:
        return "-"
    if math.isnan(value):
        return "nan"
    if float(value).is_integer() or abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:,.1f}"
    return f"{value:.3g}" if abs(value) < 1 else f"{value:.2f}"


def _cells(figure: Figure) -> list[str]:
    target = f"{figure.op} {_number(figure.target)}" if figure.op else ""
    ratio = figure.ratio()
    measured = f"{_number(figure.measured)} {figure.unit}".strip()
    return [figure.scenario, figure.name, target, measured, f"{ratio:.3f}" if ratio is not None else "",
            figure.verdict(), figure.note]


HEADER = ["scenario", "figure", "target", "measured", "ratio", "", "note"]


def table(figures: list[Figure]) -> str:
    """The plain-text table printed at the end of a run."""
    rows = [HEADER, *(_cells(f) for f in figures)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADER))]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown(figures: list[Figure], machine: dict[str, Any], meta: dict[str, Any]) -> str:
    rows = ["| " + " | ".join([*HEADER[:-1], "note"]) + " |", "|" + "---|" * len(HEADER)]
    rows += ["| " + " | ".join(c.replace("|", "\\|") for c in _cells(f)) + " |" for f in figures]
    load = f"{machine.get('load_average_at_start')} at start, {meta.get('load_average_at_end')} at end"
    head = (f"Run {meta['finished']} ({meta['mode']} mode, {meta['seconds']:.0f} s, runner "
            f"{meta['runner']}) on {machine['cpu']}, {machine['cores']} cores, {machine['memory_gb']} GB; "
            f"{machine['os']}, Python {machine['python']}, PostgreSQL {machine['postgresql']}, "
            f"Airflow {machine['airflow']}. Load average {load}. CPU check (ns per step of a fixed Python loop, "
            f"lower is faster): {machine.get('cpu_check_ns_at_start')} at start, {meta.get('cpu_check_ns_at_end')} "
            "at end.")
    return head + "\n\n" + "\n".join(rows)


def write_json(path: Path, figures: list[Figure], machine: dict[str, Any], meta: dict[str, Any],
               details: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"meta": meta, "machine": machine, "figures": [f.as_dict() for f in figures], "details": details}
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")


def record_latest(text: str, path: Path = RESULTS_MD) -> None:
    """Replace the block between the latest-table markers (added at the end if missing)."""
    block = f"{LATEST_START}\n{text}\n{LATEST_END}"
    current = path.read_text() if path.exists() else "# Benchmark results\n"
    if LATEST_START in current and LATEST_END in current:
        before, rest = current.split(LATEST_START, 1)
        after = rest.split(LATEST_END, 1)[1]
        path.write_text(before + block + after)
    else:
        path.write_text(current.rstrip() + "\n\n## Latest run\n\n" + block + "\n")
