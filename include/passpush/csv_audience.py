"""Member-id lists uploaded as CSV, read the way spreadsheets really export them.

Accepted: a ``member_id`` column (or ``external_id``, or header variants such as "Member ID"),
or a single column with no header; UTF-8 with or without BOM, CRLF, quotes, blank lines,
duplicates. Refused with the line number: non-UTF-8 or binary content, no id column, a
different delimiter, ids that are not plain identifiers (spaces inside, spreadsheet formulas
such as ``=cmd|...``), files over the size limit, and local paths outside the upload folder.
"""

from __future__ import annotations

import csv
import io
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from passpush.errors import AudienceError
from passpush.paths import STATE_DIR

UPLOAD_DIR_ENV = "PASSPUSH_UPLOAD_DIR"
DEFAULT_MAX_BYTES = 32 * 1024 * 1024  # a million ids is ~15 MB; anything far larger is not a member list
ID_HEADERS = {"member_id", "memberid", "member", "external_id", "externalid", "member_number", "id"}
# A member id: letters, digits and a few separators; never starting with a formula trigger.
VALID_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:@+-]{0,127}")
REMOTE_SCHEMES = ("s3://", "gs://", "gcs://", "az://", "abfs://", "http://", "https://")


@dataclass(frozen=True)
class CsvStats:
    rows: int
    duplicates: int
    column: str | None  # None: a single unnamed column


def upload_dir() -> Path:
    return Path(os.environ.get(UPLOAD_DIR_ENV, STATE_DIR / "uploads")).resolve()


def _normalise_header(cell: str) -> str:
    return re.sub(r"[\s\-]+", "_", cell.strip().lower())


def check_location(location: str) -> str:
    """Refuse local paths outside the upload folder; remote object storage URIs pass through."""
    if location.startswith(REMOTE_SCHEMES):
        return location
    root = upload_dir()
    path = (root / location.removeprefix("file://")).resolve()  # relative paths are inside the upload folder
    if not path.is_relative_to(root):
        raise AudienceError(f"csv_path {location!r} is outside the upload folder {root}: upload it there first")
    return str(path)


def read_bytes(location: str, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    """Read the file through Airflow's ObjectStoragePath so workers on other machines can reach it."""
    location = check_location(location)
    if location.startswith(REMOTE_SCHEMES):
        from airflow.sdk import ObjectStoragePath

        handle = ObjectStoragePath(location).open("rb")
    else:
        if not Path(location).is_file():
            raise AudienceError(f"csv_path {location!r} does not exist")
        handle = open(location, "rb")  # noqa: SIM115 - closed below
    with handle:
        data = handle.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise AudienceError(f"CSV {location!r} is over the {max_bytes // (1024 * 1024)} MB limit")
    return data


def _decode(data: bytes, source: str) -> str:
    if b"\x00" in data:
        raise AudienceError(f"CSV {source!r} looks binary (NUL bytes): export it as UTF-8 CSV")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise AudienceError(f"CSV {source!r} is not UTF-8 (line {line}): export it as UTF-8 CSV") from err


def _id_column(header: list[str], source: str) -> int:
    names = [_normalise_header(c) for c in header]
    for wanted in ("member_id", "memberid", "external_id", "externalid", "member", "member_number", "id"):
        if wanted in names:
            return names.index(wanted)
    raise AudienceError(
        f"CSV {source!r} has no member id column (found {', '.join(repr(h) for h in header)}): "
        "name it member_id or external_id, or upload a single column of ids"
    )


def parse_member_ids(data: bytes, source: str = "upload") -> Iterator[str]:
    """Yield valid member ids in file order (duplicates included); raise AudienceError on bad input."""
    text = _decode(data, source)
    rows = ((n, r) for n, r in enumerate(_records(text, source), start=1) if any(cell.strip() for cell in r))
    first = next(rows, None)
    if first is None:
        raise AudienceError(f"CSV {source!r} is empty: it needs one member id per line")
    line_no, header = first
    cells = [c.strip() for c in header]
    headerless = len(cells) == 1 and _normalise_header(cells[0]) not in ID_HEADERS
    if headerless:
        if not VALID_ID.fullmatch(cells[0]):
            _refuse_id(cells[0], line_no, source, single_column=True)
        yield cells[0]
        column = 0
    else:
        column = _id_column(header, source)
    seen_any = headerless
    for line_no, row in rows:
        cell = row[column].strip() if column < len(row) else ""
        if not VALID_ID.fullmatch(cell):
            _refuse_id(cell, line_no, source, single_column=len(header) == 1)
        seen_any = True
        yield cell
    if not seen_any:
        raise AudienceError(f"CSV {source!r} has a header but no member ids")


def _records(text: str, source: str) -> Iterator[list[str]]:
    """csv.reader's rows; its own errors (a field over the size limit) become AudienceError."""
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        yield from reader
    except csv.Error as err:
        raise AudienceError(
            f"CSV {source!r} line {reader.line_num}: {err}: it needs one member id per line") from err


def _refuse_id(cell: str, line_no: int, source: str, *, single_column: bool) -> None:
    if not cell:
        raise AudienceError(f"CSV {source!r} line {line_no}: the member id is empty")
    hint = ""
    if cell[0] in "=+-@":
        hint = " (it looks like a spreadsheet formula)"
    elif any(d in cell for d in ";\t|") and single_column:
        hint = " (is the file separated by something other than commas?)"
    raise AudienceError(f"CSV {source!r} line {line_no}: {cell[:40]!r} is not a valid member id{hint}")
