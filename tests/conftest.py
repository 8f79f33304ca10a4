"""Shared fixtures: real PostgreSQL, the PassKit emulator over HTTP, and Airflow's own test mode."""

pytest_plugins = [
    "fixtures.emulator_fixtures",
    "fixtures.postgres_fixtures",
]
