"""Where the project's non-Python files live, found from the package so it works from any cwd."""

from __future__ import annotations

import os
from pathlib import Path

# include/passpush/paths.py -> repository root
PROJECT_ROOT = Path(os.environ.get("PASSPUSH_PROJECT_ROOT", Path(__file__).resolve().parents[2]))
SQL_DIR = PROJECT_ROOT / "sql"
MIGRATIONS_DIR = SQL_DIR / "migrations"
SEGMENTS_DIR = SQL_DIR / "segments"
QUERIES_DIR = SQL_DIR / "queries"
STATE_DIR = PROJECT_ROOT / ".state"
