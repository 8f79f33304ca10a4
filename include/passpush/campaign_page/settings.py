"""Names the campaign page, its plugin and its tests agree on."""

from __future__ import annotations

from pathlib import Path

from passpush.csv_audience import MAX_BYTES_ENV, max_bytes_setting, upload_dir

DAG_ID = "push_campaign"
# Preview rows are created and resolved exactly like a dry run of the DAG, under their own dag_id.
PREVIEW_DAG_ID = "campaign_page_preview"
URL_PREFIX = "/passpush"
UI_ROUTE = "push-campaigns"
UI_NAME = "Push campaigns"
RUN_ID_PREFIX = "campaign_page"
UPLOAD_SUBDIR = "campaign-page"
MAX_UPLOAD_BYTES_ENV = MAX_BYTES_ENV
STATIC_DIR = Path(__file__).resolve().parent / "static"
SQL_DIR = Path(__file__).resolve().parent / "sql"


def page_upload_dir() -> Path:
    """Where the page stores uploaded CSVs: a folder of its own inside passpush's upload folder."""
    return upload_dir() / UPLOAD_SUBDIR


def max_upload_bytes() -> int:
    """The DAG's own CSV limit: a file the page accepts is never refused later for its size."""
    return max_bytes_setting()
