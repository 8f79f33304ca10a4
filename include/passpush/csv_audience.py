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
# One limit for reading a CSV in the DAG and for taking it at the campaign page: with two, a file the page
# accepted could be refused when counted or sent.
MAX_BYTES_ENV = "PASSPUSH_UPLOAD_MAX_BYTES"
ID_HEADERS = {"member_id", "memberid", "member", "external_id", "externalid", "member_number", "id"}
# A member id: letters, digits and a few separators; never starting with a formula trigger.
VALID_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:@+-]{0,127}")
# An id a spreadsheet stored as a number and exported reformatted: 1.0, 2.00, or in scientific notation
# (1E+05, 1.23457E+11, digits lost). No member has such an id: refused, never skipped as unknown.
SPREADSHEET_NUMBER = re.compile(r"\d+\.0+|\d+(\.\d+)?[Ee][+-]\d+")
# Both rules in one pattern: one match per id when a million are read.
_MEMBER_ID = re.compile(rf"(?!(?:{SPREADSHEET_NUMBER.pattern})\Z)(?:{VALID_ID.pattern})")
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


def max_bytes_setting() -> int:
    """The size limit of a member-id CSV: ``PASSPUSH_UPLOAD_MAX_BYTES``, else 32 MB."""
    raw = os.environ.get(MAX_BYTES_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_BYTES
    if not (raw.isascii() and raw.isdigit()) or int(raw) == 0:
        raise AudienceError(f"{MAX_BYTES_ENV}={raw!r} is not a size in bytes")
    return int(raw)


def read_bytes(location: str, max_bytes: int | None = None) -> bytes:
    """Read the file through Airflow's ObjectStoragePath so workers on other machines can reach it.

    At most ``max_bytes``, by default the limit the campaign page's uploads have (``max_bytes_setting``).
    """
    if max_bytes is None:
        max_bytes = max_bytes_setting()
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
    plain = _plain_ids(text)
    yield from plain if plain is not None else _read_records(text, source)


def _headerless_id(cells: list[str]) -> str | None:
    """The first row's id when the file has no header: a single cell that is not a column name."""
    stripped = [c.strip() for c in cells]
    return stripped[0] if len(stripped) == 1 and _normalise_header(stripped[0]) not in ID_HEADERS else None


def _plain_ids(text: str) -> list[str] | None:
    """The ids of a plain file, read a line at a time instead of a record at a time through csv.reader:
    3-4x faster and with less memory at a peak for a million ids (bench/RESULTS.md, 2026-12-07).

    Plain: no quote character and no carriage return outside CRLF, where csv.reader's records are the
    lines split at commas, and every id valid. Anything else (or any doubt) is None: _read_records then
    reads the file record by record and refuses it with the line at fault.
    """
    if '"' in text or text.count("\r") != text.count("\r\n"):
        return None
    lines = text.replace("\r\n", "\n").split("\n")
    if max(map(len, lines)) > csv.field_size_limit():
        return None
    ids = _single_column(lines) if "," not in text else _id_column_cells(lines)
    return ids if ids and all(map(_MEMBER_ID.fullmatch, ids)) else None


def _single_column(lines: list[str]) -> list[str]:
    cells = [cell for cell in map(str.strip, lines) if cell]
    if cells and _headerless_id(cells[:1]) is None:
        del cells[0]  # the header; in place: a million ids are not copied again
    return cells


def _id_column_cells(lines: list[str]) -> list[str] | None:
    # a row is blank when all its cells are, as in _read_records
    rows = [line.split(",") for line in lines if line.replace(",", "").strip()]
    if not rows:
        return None
    if _headerless_id(rows[0]) is not None:
        return None  # a single cell with a comma elsewhere in the file: irregular, csv.reader's job
    try:
        column = _id_column(rows[0], "")
    except AudienceError:
        return None
    if any(len(cells) <= column for cells in rows):
        return None
    return [cells[column].strip() for cells in rows[1:]]


def _read_records(text: str, source: str) -> Iterator[str]:
    """The ids of any file, record by record through csv.reader, refusing the first bad one by line."""
    rows = ((n, r) for n, r in enumerate(_records(text, source), start=1) if any(cell.strip() for cell in r))
    first = next(rows, None)
    if first is None:
        raise AudienceError(f"CSV {source!r} is empty: it needs one member id per line")
    line_no, header = first
    first_id = _headerless_id(header)
    if first_id is not None:
        if not _MEMBER_ID.fullmatch(first_id):
            _refuse_id(first_id, line_no, source, single_column=True)
        yield first_id
    column = 0 if first_id is not None else _id_column(header, source)
    seen_any = first_id is not None
    for line_no, row in rows:
        cell = row[column].strip() if column < len(row) else ""
        if not _MEMBER_ID.fullmatch(cell):
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
    elif SPREADSHEET_NUMBER.fullmatch(cell):
        hint = (" (it looks like a number reformatted by a spreadsheet: format the id column as text"
                " and export it again)")
    elif any(d in cell for d in ";\t|") and single_column:
        hint = " (is the file separated by something other than commas?)"
    raise AudienceError(f"CSV {source!r} line {line_no}: {cell[:40]!r} is not a valid member id{hint}")
