"""Reliability and security tests: injected faults, killed workers, bad input, secrets.

Everything here runs against the real PostgreSQL, the PassKit emulator over HTTP and, where the
task boundaries matter, Airflow itself (``dag.test()``). Every test ends with
``reliability.invariants.assert_invariants``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from passpush.csv_audience import UPLOAD_DIR_ENV


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "reliability: faults, crashes, bad input and secrets (tests/reliability)")


@pytest.fixture
def uploads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The upload folder CSV audiences must come from."""
    folder = tmp_path / "uploads"
    folder.mkdir()
    monkeypatch.setenv(UPLOAD_DIR_ENV, str(folder))
    return folder
