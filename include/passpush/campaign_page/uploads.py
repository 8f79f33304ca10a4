"""Member-id CSVs uploaded from the campaign page, stored where the DAG may read them.

The file is checked before it is kept: a ``.csv``/``.txt`` name, a text-like content type, at
most ``max_upload_bytes()`` and, above all, content that ``parse_member_ids`` accepts (the
reader the DAG itself uses). It is stored under ``<upload folder>/campaign-page/`` with a name
generated here, never one taken from the client, created exclusively (never overwriting) and
kept: its path is the campaign's ``csv_path`` and stays on record in ``push_campaigns``.
"""

from __future__ import annotations

import os
import re
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePath
from typing import Any

from passpush.campaign_page.settings import max_upload_bytes, page_upload_dir
from passpush.csv_audience import parse_member_ids
from passpush.errors import AudienceError

ALLOWED_SUFFIXES = (".csv", ".txt")
# What browsers and spreadsheets send for a CSV; Windows often says "application/vnd.ms-excel".
ALLOWED_CONTENT_TYPES = ("text/csv", "text/plain", "text/x-csv", "application/csv", "application/x-csv",
                         "application/vnd.ms-excel", "application/octet-stream", "")
SAMPLE_SIZE = 5


class UploadRefusedError(AudienceError):
    """The uploaded file is not a member-id CSV the page will keep."""

    status_code = 422


class UploadTooLargeError(UploadRefusedError):
    status_code = 413


class UploadTypeError(UploadRefusedError):
    status_code = 415


@dataclass(frozen=True)
class StoredUpload:
    csv_path: str
    filename: str
    size: int
    ids: int
    distinct: int
    duplicates: int
    sample: list[str]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_declared_size(content_length: str | None) -> None:
    """Refuse before reading the body: browsers always declare the length of a form upload."""
    limit = max_upload_bytes()
    if content_length is None or not content_length.isdigit():
        raise UploadRefusedError("the upload must declare its Content-Length")
    if int(content_length) > limit + 64 * 1024:  # room for the multipart envelope
        raise UploadTooLargeError(f"the file is over the {_megabytes(limit)} limit")


def check_type(filename: str, content_type: str | None) -> None:
    if not filename.lower().endswith(ALLOWED_SUFFIXES):
        raise UploadTypeError(f"{filename!r} is not a .csv file: export the member list as CSV")
    media_type = (content_type or "").split(";")[0].strip().lower()
    if media_type not in ALLOWED_CONTENT_TYPES:
        raise UploadTypeError(f"{filename!r} was sent as {media_type!r}, not as CSV text")


def store(data: bytes, filename: str) -> StoredUpload:
    """Validate the content with the DAG's CSV reader, then keep it under a generated name."""
    limit = max_upload_bytes()
    if len(data) > limit:
        raise UploadTooLargeError(f"{filename!r} is over the {_megabytes(limit)} limit")
    display = PurePath(filename.replace("\\", "/")).name or "upload.csv"
    try:
        ids = list(parse_member_ids(data, source=display))
    except AudienceError as err:
        raise UploadRefusedError(str(err)) from err
    path = _write_new(data, display)
    distinct = len(set(ids))
    return StoredUpload(csv_path=str(path), filename=display, size=len(data), ids=len(ids),
                        distinct=distinct, duplicates=len(ids) - distinct, sample=ids[:SAMPLE_SIZE])


def safe_name(filename: str, now: datetime | None = None) -> str:
    """A new file name: time, random part and a slug of the original name (letters and digits only)."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    slug = re.sub(r"[^a-z0-9]+", "-", PurePath(filename).stem.lower()).strip("-")[:40] or "members"
    return f"{stamp}-{uuid.uuid4().hex[:12]}-{slug}.csv"


def _write_new(data: bytes, filename: str) -> Path:
    folder = page_upload_dir()
    folder.mkdir(parents=True, exist_ok=True, mode=0o750)
    path = folder / safe_name(filename)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    return path


def checked_reference(csv_path: str) -> str:
    """A csv_path sent back by the page must name a file this page stored; anything else is refused."""
    folder = page_upload_dir().resolve()
    path = Path(csv_path).resolve()
    if not path.is_relative_to(folder) or path.suffix != ".csv":
        raise UploadRefusedError(f"csv_path {csv_path!r} is not a file uploaded through this page")
    if not path.is_file():
        raise UploadRefusedError(f"csv_path {csv_path!r} does not exist any more: upload the CSV again")
    return str(path)


def _megabytes(size: int) -> str:
    return f"{size / (1024 * 1024):g} MB"
