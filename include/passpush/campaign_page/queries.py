"""The page's SQL, one file per query under ``campaign_page/sql/``, read once per process."""

from __future__ import annotations

from functools import cache

from passpush.campaign_page.settings import SQL_DIR


@cache
def load(name: str) -> str:
    return (SQL_DIR / f"{name}.sql").read_text()
