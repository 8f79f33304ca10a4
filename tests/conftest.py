"""Shared fixtures: real PostgreSQL, the PassKit emulator over HTTP, and Airflow's own test mode.

Airflow reads its configuration when first imported, so its environment (a throw-away
AIRFLOW_HOME with SQLite metadata, this project's dags folder, no examples) is set here,
before any test module imports it.
"""

import os
import tempfile
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="passpush-airflow-"))
os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(_ROOT / "dags"))
os.environ.setdefault("AIRFLOW__CORE__PLUGINS_FOLDER", str(_ROOT / "plugins"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "False")

pytest_plugins = [
    "fixtures.emulator_fixtures",
    "fixtures.postgres_fixtures",
    "fixtures.loyalty_fixtures",
    "fixtures.airflow_fixtures",
]
